"""Network definitions: the paper's CNN, the edge CNN, the ImageNet backbones and the PyTorch weight reader they load from."""
