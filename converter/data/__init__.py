"""Datasets (built-in sets, class-per-folder folders and archives), splits, the decoded-image cache, augmentation and the training batches."""
