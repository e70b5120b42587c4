"""Device runtime: capture frames, classify them with an int8 LiteRT model, show or log results.

Never imports TensorFlow: a Raspberry Pi installs only NumPy, OpenCV and ai-edge-litert.
"""

__version__ = "0.1.0"
