"""Training: the CNN recipes (classic, airbench), transfer learning with the few-shot heads, and what they share.

Distillation, distributed training, resume points and run artefacts; retraining on an edge-app --collect folder.
"""
