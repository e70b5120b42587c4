"""Shipped int8 models (installed as the ``edge_app_models`` package).

Each sub-folder holds ``model.tflite``, ``labels.txt`` and ``manifest.json``.
"""
