"""systemd/install.sh, run for real into a temporary --prefix: venv, package, unit, config; idempotent; dry run; uninstall."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "systemd" / "install.sh"
# The interpreter this test environment was made from: a real Python >= 3.11 with venv/ensurepip.
BASE_PYTHON = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
# No --no-deps: the venv gets what a Pi gets (NumPy, LiteRT, the integrations, and the headless OpenCV wheel
# because this Python has no system OpenCV), so the installed edge-app can be run, not only imported.
PIP_ARGS = ""


def install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=300, check=False)


def install_ok(prefix: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = install("--prefix", str(prefix), "--python", str(BASE_PYTHON), "--pip-args", PIP_ARGS, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("root")
    install_ok(prefix)
    return prefix


def test_installs_venv_package_unit_and_config(installed: Path) -> None:
    venv = installed / "opt" / "edge-app" / "venv"
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    entry = venv / "bin" / "edge-app"
    assert os.access(entry, os.X_OK)
    script = entry.read_text()
    assert script.startswith(f"#!{venv}/bin/python") and "edge_app.cli" in script
    probe = "import edge_app, edge_app_models, pathlib; print(edge_app.__file__); print(pathlib.Path(edge_app_models.__path__[0], 'imagenet', 'model.tflite'))"
    result = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=60, check=False, cwd="/")
    assert result.returncode == 0, result.stderr
    module, model = result.stdout.split()
    assert Path(module).is_relative_to(venv), f"edge_app imported from {module}, not from the venv"
    assert Path(model).stat().st_size > 10_000, "the shipped model did not get installed with the package"

    unit = installed / "etc" / "systemd" / "system" / "edge-app.service"
    assert unit.read_text() == (REPO / "systemd" / "edge-app.service").read_text()
    config = installed / "etc" / "edge-app" / "config.toml"
    assert config.read_text() == (REPO / "systemd" / "config.example.toml").read_text()


def test_the_installed_edge_app_runs_on_a_real_video_and_checks_the_installed_config(installed: Path, tmp_path: Path, cifar10_val, write_video) -> None:
    venv = installed / "opt" / "edge-app" / "venv"
    video = write_video(tmp_path / "clip.avi", cifar10_val.x[:10])
    log = tmp_path / "out.jsonl"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NOTIFY_SOCKET", "DISPLAY")}
    # cwd=/ and no PYTHONPATH: only the venv's copy of the package can be imported, as under systemd
    run = subprocess.run(
        [str(venv / "bin" / "edge-app"), "--source", str(video), "--headless", "--log", str(log)],
        capture_output=True, text=True, timeout=120, check=False, cwd="/", env=clean,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 10 and all(r["model"].startswith("imagenet@") for r in records)  # the default bundle
    assert str(venv) in run.stderr  # the model it loaded is the one installed in the venv (edge_app_models)
    config = installed / "etc" / "edge-app" / "config.toml"
    check = subprocess.run(
        [str(venv / "bin" / "edge-app"), "--check-config", "--config", str(config)], capture_output=True, text=True, timeout=60, check=False, cwd="/", env=clean
    )
    assert check.returncode == 0 and "config OK" in check.stdout, check.stdout + check.stderr


def test_picks_opencv_extra_from_the_system(tmp_path: Path) -> None:
    has_cv2 = subprocess.run([str(BASE_PYTHON), "-c", "import cv2"], capture_output=True, timeout=60, check=False).returncode == 0
    result = install("--dry-run", "--prefix", str(tmp_path / "root"), "--python", str(BASE_PYTHON))
    assert result.returncode == 0, result.stderr
    expected = "using the system OpenCV" if has_cv2 else "installing opencv-python-headless"
    assert expected in result.stdout
    assert ("[integrations]" if has_cv2 else "[headless,integrations]") in result.stdout


def test_installed_unit_verifies_against_the_installed_venv(installed: Path) -> None:
    # systemd-analyze verify --root checks the unit as the target system sees it: /opt/edge-app/venv/bin/edge-app
    # must exist under the root. It also needs systemd's own units there (sysinit.target and friends).
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze not found: sudo apt-get install -y systemd"
    units = installed / "usr" / "lib" / "systemd" / "system"
    if not units.exists():
        shutil.copytree("/usr/lib/systemd/system", units, symlinks=True)
    kill = installed / "bin" / "kill"  # ExecReload= runs the system's kill, which verify looks for under the root too
    kill.parent.mkdir(exist_ok=True)
    shutil.copy2(shutil.which("kill", path="/bin:/usr/bin") or "/bin/kill", kill)
    result = subprocess.run(
        [exe, "verify", "--man=no", f"--root={installed}", "/etc/systemd/system/edge-app.service"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.rmtree(installed / "usr")
    shutil.rmtree(installed / "bin")


def test_second_run_is_idempotent_and_keeps_an_edited_config(installed: Path) -> None:
    config = installed / "etc" / "edge-app" / "config.toml"
    edited = config.read_text().replace("# threshold = 0.3", "threshold = 0.6") + "\n# edited by the user\n"
    assert "\nthreshold = 0.6\n" in edited
    config.write_text(edited)
    before = tree(installed)
    module = next(installed.glob("opt/edge-app/venv/lib/python3*/site-packages/edge_app/__init__.py"))
    module_mtime = module.stat().st_mtime_ns
    result = install_ok(installed)
    assert tree(installed) == before
    assert module.stat().st_mtime_ns != module_mtime, "a second run should reinstall the package (an upgrade)"
    assert config.read_text() == edited
    assert "keeping the existing" in result.stdout
    assert "reusing the virtual environment" in result.stdout


def test_dry_run_changes_nothing(tmp_path: Path, installed: Path) -> None:
    fresh = tmp_path / "fresh"
    result = install("--dry-run", "--prefix", str(fresh), "--python", str(BASE_PYTHON))
    assert result.returncode == 0, result.stderr
    assert not fresh.exists()
    assert "would run:" in result.stdout and "-m venv --system-site-packages" in result.stdout

    before = {p: p.stat().st_mtime_ns for p in installed.rglob("*")}
    for args in ((), ("--uninstall",), ("--uninstall", "--purge")):
        result = install("--dry-run", "--prefix", str(installed), "--python", str(BASE_PYTHON), *args)
        assert result.returncode == 0, result.stderr
        assert "would run:" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in installed.rglob("*")} == before

    # Without --prefix it needs no root and leaves the real /opt alone.
    existed = Path("/opt/edge-app").exists()
    result = install("--dry-run", "--python", str(BASE_PYTHON))
    assert result.returncode == 0, result.stderr
    assert "/opt/edge-app/venv" in result.stdout
    assert Path("/opt/edge-app").exists() == existed


def test_uninstall_keeps_config_and_state_unless_purged(tmp_path: Path, installed: Path) -> None:
    prefix = tmp_path / "root"
    shutil.copytree(installed, prefix, symlinks=True)
    # What the service leaves behind (DynamicUser= keeps the real folders under private/).
    state = prefix / "var" / "lib" / "private" / "edge-app" / "snapshots" / "cat.jpg"
    logs = prefix / "var" / "log" / "private" / "edge-app" / "results.jsonl"
    for path in (state, logs):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    (prefix / "var" / "lib" / "edge-app").symlink_to("private/edge-app")
    (prefix / "var" / "log" / "edge-app").symlink_to("private/edge-app")

    result = install("--uninstall", "--prefix", str(prefix))
    assert result.returncode == 0, result.stderr
    assert not (prefix / "opt" / "edge-app").exists()
    assert not (prefix / "etc" / "systemd" / "system" / "edge-app.service").exists()
    assert (prefix / "etc" / "edge-app" / "config.toml").exists()
    assert state.exists() and logs.exists()
    assert install("--uninstall", "--prefix", str(prefix)).returncode == 0, "a second uninstall should be a no-op"

    result = install("--uninstall", "--purge", "--prefix", str(prefix))
    assert result.returncode == 0, result.stderr
    assert not (prefix / "etc" / "edge-app").exists()
    assert not (prefix / "var" / "lib" / "edge-app").is_symlink() and not state.exists()
    assert not (prefix / "var" / "log" / "edge-app").is_symlink() and not logs.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--frobnicate",), "unknown option '--frobnicate'"),
        (("--purge",), "--purge only goes with --uninstall"),
        (("--prefix",), "--prefix needs a value"),
        (("--python", "/nonexistent/python3"), "'/nonexistent/python3' not found"),
        (("--source", "/"), "/ is not an edge-recognition checkout"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = install("--prefix", str(tmp_path / "root"), *args) if args[0] != "--prefix" else install(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("install.sh: error:"), result.stderr
    assert message in lines[0]
    assert not (tmp_path / "root").exists()


def test_shellcheck_clean() -> None:
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck not found: sudo apt-get install -y shellcheck"
    result = subprocess.run([exe, "--severity=style", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
