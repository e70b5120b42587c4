"""Data-parallel training: two real worker processes on loopback (MultiWorkerMirroredStrategy via TF_CONFIG)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

BASE = ["--data", "fashion-mnist", "--limit-per-class", "100", "--arch", "edge", "--recipe", "airbench", "--widths", "16,32,32",
        "--batch-size", "64", "--epochs", "4", "--precision", "float32", "--seed", "0"]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}})


def _train(out: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "converter.cli.train", *BASE, *extra, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_multi_worker_without_tf_config_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    proc = subprocess.run([sys.executable, "-m", "converter.cli.train", *BASE, "--distribute", "multi-worker", "--out", str(tmp_path / "o")],
                          check=False, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--distribute multi-worker needs TF_CONFIG: set it on every worker" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(("tf_config", "message"), [
    ("{not json", "TF_CONFIG is not valid: expected"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 3}}', "index 3 is not one of its 1 workers"),
    ('{"cluster": {"worker": ["localhost:1"]}}', "TF_CONFIG is not valid: expected"),
], ids=["malformed", "bad-index", "no-task"])
def test_a_bad_tf_config_is_rejected_before_any_training(monkeypatch: pytest.MonkeyPatch, tf_config: str, message: str) -> None:
    from converter.errors import DataError
    from converter.training.distributed import make_strategy

    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(DataError, match=message):
        make_strategy("auto")


def test_one_machine_without_tf_config_trains_without_a_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    from converter.training.distributed import cluster_workers, make_strategy, worker_count, worker_index

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cluster_workers() == 0 and make_strategy("auto") is None and make_strategy("none") is None
    assert worker_index(None) == 0 and worker_count(None) == 1


def _resume_epoch(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / "resume.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return None


def _two_workers(out: Path, env: dict[str, str], *extra: str) -> list[tuple[subprocess.Popen[str], tuple[str, str]]]:
    """Both workers of a run on loopback, to the end: (process, (stdout, stderr)) of worker 0, then of worker 1."""
    ports = _free_ports(2)
    workers = [_train(out, {**env, "TF_CONFIG": _tf_config(ports, i)}, *extra) for i in range(2)]
    return [(w, w.communicate(timeout=600)) for w in workers]


def test_two_workers_killed_on_both_resume_to_the_quality_of_one_worker(tmp_path: Path) -> None:
    """One worker trains the run alone; two workers on loopback train the same run (the same global batch of 64 split
    over them), are both killed mid-run and started again with --resume: the run finishes where it left off, with every
    epoch's history, written by the chief alone, as good as the one worker's."""
    import time

    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    one = _train(tmp_path / "one", env, "--distribute", "none")
    _, one_err = one.communicate(timeout=600)
    assert one.returncode == 0, one_err
    single = json.loads((tmp_path / "one" / "train_report.json").read_text())
    assert (single["workers"], single["replicas"]) == (1, 1)
    assert single["val_accuracy"] > 0.6, single["val_accuracy"]

    out = tmp_path / "two"
    ports = _free_ports(2)
    workers = [_train(out, {**env, "TF_CONFIG": _tf_config(ports, i)}) for i in range(2)]
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:  # both saved the resume point of the same epoch, 2 of the 4 or later
            chief, other = _resume_epoch(out), _resume_epoch(out / "worker-1")
            if chief is not None and chief >= 2 and chief == other:
                break
            assert all(w.poll() is None for w in workers), "a worker ended before it could be interrupted"
            time.sleep(0.02)
    finally:
        for w in workers:
            w.kill()
            w.communicate()
    stopped = (_resume_epoch(out), _resume_epoch(out / "worker-1"))  # as the kill left them
    print(f"killed with resume points at epochs {stopped}")  # pytest -rP
    assert stopped[0] is not None and stopped[0] >= 2 and not (out / "model.keras").exists()

    again = _two_workers(out, env, "--resume")
    if stopped[0] != stopped[1]:  # killed between the two workers' saves: refused on one line, not a hang
        assert any(w.returncode != 0 and "another worker's is not" in err.strip().splitlines()[-1] for w, (_, err) in again)
        again, stopped = _two_workers(tmp_path / "fresh", env), (None, None)  # the two workers' quality, from a fresh run
        out = tmp_path / "fresh"
    (chief_proc, (_, chief_err)), (other_proc, (other_out, other_err)) = again
    assert [chief_proc.returncode, other_proc.returncode] == [0, 0], chief_err[-2000:] + other_err[-2000:]
    assert json.loads(other_out.strip().splitlines()[-1])["worker"] == 1, other_err  # the other worker trained, wrote nothing
    assert "2 replicas" in chief_err
    double = json.loads((out / "train_report.json").read_text())
    assert (double["workers"], double["replicas"]) == (2, 2)
    if stopped[0] is not None:
        assert double["resumed_at_epoch"] == stopped[0] + 1
    history = json.loads((out / "history.json").read_text())
    assert len(history["val_accuracy"]) == len(history["loss"]) == 4 and history["loss"][-1] < history["loss"][0]
    assert double["val_accuracy"] > 0.6, double["val_accuracy"]
    assert double["val_accuracy"] >= single["val_accuracy"] - 0.05, (double["val_accuracy"], single["val_accuracy"])
    assert not (out / "worker-1").exists() and not (out / "resume.keras").exists() and (out / "model.keras").is_file()


AGREE = """
import json, os, sys
from converter.training.distributed import make_strategy, same_on_every_worker
strategy = make_strategy("multi-worker")
print(json.dumps([same_on_every_worker(strategy, int(v)) for v in sys.argv[1:]]))
"""


def test_workers_find_out_whether_they_agree_in_one_all_reduce(tmp_path: Path) -> None:
    """What --resume checks before training: the same value on both workers agrees, different ones do not (either way round)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    ports = _free_ports(2)
    values = [["3", "3", "5", "0"], ["3", "4", "2", "0"]]  # worker 0's and worker 1's, call by call
    procs = [subprocess.Popen([sys.executable, "-c", AGREE, *values[i]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**env, "TF_CONFIG": _tf_config(ports, i)}) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:]
    for out, _ in outs:
        assert json.loads(out.strip().splitlines()[-1]) == [True, False, False, True]
