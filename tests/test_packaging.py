"""The package as users get it: the wheel and the sdist built for real, installed non-editable into fresh venvs.

An editable install imports straight from the checkout and never notices a subpackage missing from the
wheel (a release once shipped without ``edge_app/outputs`` and ``edge_app/sources``). Here the wheel's
file list is compared with the source tree, and the installed ``edge-app`` runs a real video from ``/``
with no ``PYTHONPATH``, so only what was installed can be imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def source_files() -> set[str]:
    """What the wheel must hold: every module of edge_app/ and converter/, the web pages' static files, and every file of
    every model bundle."""
    code = {p.relative_to(REPO).as_posix() for top in ("edge_app", "converter") for p in (REPO / top).rglob("*.py") if "__pycache__" not in p.parts}
    code |= {p.relative_to(REPO).as_posix() for d in ("review", "web") for p in (REPO / "edge_app" / d / "static").iterdir() if p.is_file()}
    models = {
        "edge_app_models/" + p.relative_to(REPO / "models").as_posix()
        for p in (REPO / "models").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".tflite", ".txt", ".json", ".md")
    }
    return code | models


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", str(out), str(REPO)], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"wheel": next(out.glob("*.whl")), "sdist": next(out.glob("*.tar.gz"))}


def fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin"


def pip_install(bin_dir: Path, *args: str) -> None:
    result = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        capture_output=True, text=True, timeout=600, check=False, cwd="/",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def run_installed(bin_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed ``edge-app`` from ``/``, without this checkout on ``PYTHONPATH``."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DISPLAY", "WAYLAND_DISPLAY", "NOTIFY_SOCKET")}
    return subprocess.run([str(bin_dir / "edge-app"), *args], capture_output=True, text=True, timeout=timeout, check=False, cwd="/", env=clean)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, cifar10_val, write_video) -> Path:
    return write_video(tmp_path_factory.mktemp("pkg") / "clip.avi", cifar10_val.x[:12])


def classify_clip(bin_dir: Path, clip: Path, log: Path) -> None:
    result = run_installed(bin_dir, "--source", str(clip), "--headless", "--log", str(log))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 12 and all(r["model"].startswith("imagenet@") for r in records)  # the default bundle
    # with its own threshold, read from the installed bundle's manifest: these upscaled 32 px frames are mostly unsure
    assert "threshold 0.1 (recommended by the model's manifest.json)" in result.stderr
    assert all(c["score"] >= 0.1 for r in records for c in r["top"]), [r["top"] for r in records]
    assert "site-packages/edge_app_models/imagenet/model.tflite" in result.stderr  # the bundle shipped inside the package


def test_the_wheel_holds_exactly_the_source_tree(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = {n for n in whl.namelist() if ".dist-info/" not in n}
        entry_points = next(whl.read(n).decode() for n in whl.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert names == source_files(), f"missing: {sorted(source_files() - names)}; unexpected: {sorted(names - source_files())}"
    assert "edge_app/outputs/logsink.py" in names and "edge_app/sources/grabber.py" in names
    for script in ("edge-app", "train-model", "convert-model", "evaluate-model", "compare-models", "check-decode"):
        assert f"{script} = " in entry_points


def test_the_sdist_holds_the_source_tree_and_the_service_files(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as sdist:
        names = {m.name.split("/", 1)[1] for m in sdist.getmembers() if m.isfile() and "/" in m.name}
    wanted = {n.replace("edge_app_models/", "models/", 1) for n in source_files()}
    wanted |= {"pyproject.toml", "setup.py", "README.md", "systemd/edge-app.service", "systemd/install.sh", "systemd/config.example.toml"}
    assert wanted <= names, f"missing from the sdist: {sorted(wanted - names)}"


def test_the_wheel_installs_and_runs_from_a_fresh_venv(dists: dict[str, Path], tmp_path: Path, clip: Path, repo_root: Path) -> None:
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, f"{dists['wheel']}[headless]")
    classify_clip(bin_dir, clip, tmp_path / "out.jsonl")
    check = run_installed(bin_dir, "--check-config", "--config", str(repo_root / "systemd" / "config.example.toml"))
    assert check.returncode == 0 and "config OK" in check.stdout, check.stdout + check.stderr
    # the headless OpenCV has no window: asking for one is one line naming the fix, not a crash
    window = run_installed(bin_dir, "--source", str(clip))
    assert window.returncode == 7 and window.stderr.strip().splitlines()[-1].startswith("edge-app: error:"), window.stderr
    assert "--headless" in window.stderr and "Traceback" not in window.stderr


def test_the_sdist_without_extras_explains_opencv_then_runs_once_it_is_there(dists: dict[str, Path], tmp_path: Path, clip: Path) -> None:
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, str(dists["sdist"]))
    helped = run_installed(bin_dir, "--help")
    assert helped.returncode == 0 and "--source" in helped.stdout and helped.stderr == ""
    assert run_installed(bin_dir, "--version").returncode == 0
    missing = run_installed(bin_dir, "--source", str(clip), "--headless")
    lines = missing.stderr.strip().splitlines()
    assert missing.returncode == 8 and len(lines) == 1 and "Traceback" not in missing.stderr, missing.stderr
    assert "OpenCV (the cv2 module) is not installed" in lines[0] and "edge-recognition[gui]" in lines[0] and "[headless]" in lines[0]
    pip_install(bin_dir, "opencv-python-headless>=4.8")
    classify_clip(bin_dir, clip, tmp_path / "out.jsonl")
