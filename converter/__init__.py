"""Workstation side: datasets, model definitions, training, quantisation, evaluation."""

__version__ = "0.1.0"
