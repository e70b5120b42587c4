"""The classical baselines of the paper's comparison: hand-crafted features (HOG, LBP, ...) with scikit-learn classifiers."""
