"""Package discovery (the metadata is in pyproject.toml).

Every package under ``edge_app/`` and ``converter/`` is found, never listed by hand, so a new
subpackage cannot be left out of the wheel again; the model bundles in ``models/`` install as
``edge_app_models``, one data folder per bundle. ``tests/test_packaging.py`` builds the wheel and
the sdist and compares their files with the source tree.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
BUNDLE_FILES = ["*.tflite", "*.txt", "*.json"]

code = find_packages(where=str(HERE), include=["edge_app", "edge_app.*", "converter", "converter.*"])
bundles = sorted(p.name for p in (HERE / "models").iterdir() if p.is_dir() and (p / "model.tflite").is_file())

setup(
    packages=[*code, "edge_app_models", *(f"edge_app_models.{name}" for name in bundles)],
    package_dir={"edge_app_models": "models"},
    package_data={
        "edge_app.review": ["static/*"],
        "edge_app.web": ["static/*"],
        "edge_app_models": ["*.md"],
        **{f"edge_app_models.{name}": BUNDLE_FILES for name in bundles},
    },
)
