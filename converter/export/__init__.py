"""From a trained Keras model to a bundle: int8 quantisation, the conversion and its checks, TFLite metadata, the Edge TPU, the ImageNet bundle."""
