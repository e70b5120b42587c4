"""check-decode: how far --decode reduced may go for a model, measured on real photos, recorded in its manifest, obeyed by edge-app."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from converter.evaluation.decode_check import cover_for, passing
from edge_app.model import default_model_dir
from tests.edge_app.helpers import edge_app, one_error_line

pytestmark = pytest.mark.timeout(300)


def test_a_reduction_passes_at_99_percent_or_near_the_full_decode_floor_and_none_after_a_failure() -> None:
    assert passing({2: 0.995, 4: 0.991, 8: 0.95}, floor=1.0) == {2: True, 4: True, 8: False}
    assert passing({2: 0.98, 4: 0.979, 8: 0.99}, floor=0.988) == {2: True, 4: True, 8: True}  # a second full decode: 98.8 %
    assert passing({2: 0.97, 4: 0.995, 8: 0.995}, floor=1.0) == {2: False, 4: False, 8: False}  # never past a failing one
    assert cover_for({2: 1.0, 4: 1.0, 8: 1.0}, 1.0, need=32) == 1.0  # every reduction agrees: the plain rule
    assert cover_for({2: 1.0, 4: 0.995, 8: 0.94}, 1.0, need=32) == 3.75  # 1/4 of 480 = 120 px = 3.75 inputs
    assert cover_for({2: 0.9, 4: 0.9, 8: 0.9}, 1.0, need=32) == 15.0  # none agrees: a 480 px crop, i.e. no reduction at 640x480
    assert cover_for({2: 1.0, 4: 0.9, 8: 0.9}, 1.0, need=224) == 1.071


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory, shared_datasets: Path) -> tuple[Path, dict]:
    """The shipped CIFAR-10 bundle, copied without its measurement, then measured on 300 real dogs-vs-cats photos with --write."""
    bundle = tmp_path_factory.mktemp("decode") / "cifar10"
    shutil.copytree(default_model_dir("cifar10"), bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.pop("decode", None)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    proc = subprocess.run([sys.executable, "-m", "converter.cli.decode_check", str(bundle), "--frames", str(shared_datasets / "cats-vs-dogs.tar.gz"),
                           "--limit", "300", "--write", "-q"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return bundle, json.loads(proc.stdout)


def test_the_32x32_model_changes_its_answers_at_1_8_scale_on_real_photos(measured: tuple[Path, dict]) -> None:
    bundle, result = measured
    agreement = result["agreement"]
    assert result["images"] == 300 and result["content"].startswith("photos of cats-vs-dogs")
    assert agreement["8"] < agreement["2"] and agreement["8"] < result["full_decode_floor"] - result["slack"]  # 1/8 fails
    assert agreement["2"] >= min(0.99, result["full_decode_floor"] - result["slack"])  # 1/2 passes
    assert result["cover"] in (3.75, 7.5)  # 1/4 (120 px) or, if 1/4 also failed on this sample, 1/2 (240 px)
    assert json.loads((bundle / "manifest.json").read_text())["decode"] == result


def test_edge_app_decodes_no_smaller_than_the_manifest_allows(tmp_path: Path, measured: tuple[Path, dict], cifar10_val, write_video) -> None:
    bundle, result = measured
    video = write_video(tmp_path / "clip.avi", cifar10_val.x[:5])
    factor = 4 if result["cover"] == 3.75 else 2
    ran = edge_app("--model", str(bundle), "--source", str(video), "--headless", "--decode", "reduced")
    assert ran.returncode == 0 and f"at 1/{factor} scale" in ran.stderr and f"{result['cover']:g}x that" in ran.stderr, ran.stderr
    plain = tmp_path / "plain"
    shutil.copytree(bundle, plain)
    manifest = json.loads((plain / "manifest.json").read_text())
    del manifest["decode"]  # a bundle from before check-decode: the plain rule
    (plain / "manifest.json").write_text(json.dumps(manifest))
    ran = edge_app("--model", str(plain), "--source", str(video), "--headless", "--decode", "reduced")
    assert ran.returncode == 0 and "at 1/8 scale" in ran.stderr, ran.stderr
    manifest["decode"] = {"cover": "wide"}
    (plain / "manifest.json").write_text(json.dumps(manifest))
    bad = edge_app("--model", str(plain), "--source", str(video), "--headless")
    assert bad.returncode != 0 and "decode.cover 'wide' is not a number from 1 to 1000" in one_error_line(bad)


def test_check_decode_errors_are_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "converter.cli.decode_check", str(tmp_path), "--data", "fashion-mnist"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 4 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"check-decode: error: no manifest.json in {tmp_path}; pass a bundle folder written by convert-model"
