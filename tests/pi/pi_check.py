"""Helpers of tests/pi/run.sh, run on the x86 host and inside the emulated Raspberry Pi root.

    python pi_check.py make-video DATASETS OUT.avi FRAMES   (host: a real video from dogs-vs-cats photos)
    python pi_check.py make-inputs DATASETS OUT_DIR          (host: one real photo per shipped bundle, .npy)
    python pi_check.py invoke INPUT_DIR OUT.json             (both: one invoke() per bundle, uint8 outputs)
    python pi_check.py compare-invoke X86.json PI.json [MAX] (host: |diff| <= MAX (1) per output, same top-1)
    python pi_check.py compare-logs X86.jsonl PI.jsonl FRAMES [MIN] (host: valid JSON, top-1 equal on >= MIN (99 %))
    python pi_check.py web PORT TOKEN                        (host: /api/status and one /stream.mjpg frame)

Only the standard library and NumPy at import time: the Pi side has no OpenCV wheel of its own (apt's
python3-opencv) and no TensorFlow. Each check prints one line, ``PASS name detail`` or ``FAIL name detail``,
and exits non-zero on a failure.
"""

from __future__ import annotations

import http.client
import io
import json
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

# The shipped bundles (models/) whose invoke() is compared across machines.
BUNDLES = ("cifar10", "cats-vs-dogs")
AGREEMENT = 0.99


def _photos(datasets: Path, count: int, offset: int = 0) -> list[np.ndarray]:
    """``count`` real RGB photos from the dogs-vs-cats archive's test split, in archive order."""
    import cv2

    photos: list[np.ndarray] = []
    with tarfile.open(datasets / "cats-vs-dogs.tar.gz") as tar:
        seen = 0
        for member in tar:
            if not member.isfile() or not member.name.lower().endswith((".jpg", ".jpeg", ".png")) or "/test/" not in f"/{member.name}":
                continue
            seen += 1
            if seen <= offset:
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            bgr = cv2.imdecode(np.frombuffer(handle.read(), np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                continue
            photos.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if len(photos) == count:
                return photos
    if not photos:
        sys.exit(f"no photos under test/ in {datasets / 'cats-vs-dogs.tar.gz'}")
    return photos


def make_video(datasets: Path, out: Path, frames: int) -> None:
    """An MJPG AVI (640x480, 30 fps) that pans slowly over real photos, a new photo every 20 frames."""
    import cv2

    per_photo = 20
    photos = _photos(datasets, max(1, -(-frames // per_photo)))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (640, 480))
    if not writer.isOpened():
        sys.exit(f"OpenCV cannot write {out}")
    for i in range(frames):
        photo = cv2.resize(photos[(i // per_photo) % len(photos)], (720, 540), interpolation=cv2.INTER_AREA)
        step = i % per_photo
        x, y = 4 * step, 3 * step  # a slow pan: every frame differs a little
        writer.write(cv2.cvtColor(np.ascontiguousarray(photo[y : y + 480, x : x + 640]), cv2.COLOR_RGB2BGR))
    writer.release()
    print(f"wrote {out}: {frames} frames, 640x480, {len(photos)} photos")


def _bundle_dir(name: str) -> Path:
    from edge_app.model import default_model_dir

    return default_model_dir(name)


def make_inputs(datasets: Path, out_dir: Path) -> None:
    """One real photo per bundle, resized to its input size: the same bytes go to both machines."""
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    photo = _photos(datasets, 1, offset=7)[0]
    for name in BUNDLES:
        manifest = json.loads((_bundle_dir(name) / "manifest.json").read_text())
        size = (int(manifest["input"]["width"]), int(manifest["input"]["height"]))
        pixels = cv2.resize(photo, size, interpolation=cv2.INTER_AREA).astype(np.uint8)[None]
        np.save(out_dir / f"{name}.npy", pixels)
    print(f"wrote {len(BUNDLES)} model inputs to {out_dir}")


def invoke(input_dir: Path, out: Path) -> None:
    """Run each installed bundle once on its saved input with the runtime edge-app chose; write the uint8 outputs."""
    from edge_app.runtime import get_runtime

    runtime = get_runtime()
    result: dict[str, object] = {"runtime": f"{runtime.name} {runtime.version}", "numpy": np.__version__}
    for name in BUNDLES:
        folder = _bundle_dir(name)
        interpreter = runtime.interpreter(model_path=str(folder / "model.tflite"), num_threads=1)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.load(input_dir / f"{name}.npy"))
        interpreter.invoke()
        output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        result[name] = {"dtype": str(output.dtype), "output": output.reshape(-1).astype(int).tolist(), "model": str(folder)}
    out.write_text(json.dumps(result))
    print(f"invoked {', '.join(BUNDLES)} with {result['runtime']} (NumPy {np.__version__})")


def compare_invoke(x86_path: Path, pi_path: Path, max_diff: int = 1) -> int:
    """Each bundle's uint8 outputs within ``max_diff`` of x86's, and the same top-1 class."""
    x86, pi = json.loads(x86_path.read_text()), json.loads(pi_path.read_text())
    failures = 0
    for name in BUNDLES:
        a, b = x86[name], pi[name]
        ok = a["dtype"] == b["dtype"] == "uint8" and len(a["output"]) == len(b["output"])
        diff = int(np.max(np.abs(np.array(a["output"]) - np.array(b["output"])))) if ok else -1
        ok = ok and diff <= max_diff and int(np.argmax(a["output"])) == int(np.argmax(b["output"]))
        failures += not ok
        print(
            f"{'PASS' if ok else 'FAIL'} invoke-{name} max |uint8 diff| {diff} (<= {max_diff} allowed) "
            f"x86 {x86['runtime']} vs pi {pi['runtime']}; top-1 index x86 {int(np.argmax(a['output']))} pi {int(np.argmax(b['output']))}"
        )
    return failures


def _records(path: Path) -> tuple[list[dict], int]:
    """The JSON records of a JSONL log and how many lines were not a JSON object."""
    records, bad = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(value, dict):
            records.append(value)
        else:
            bad += 1
    return records, bad


def _top1(record: dict) -> str:
    for key in ("label", "top1"):
        if isinstance(record.get(key), str):
            return record[key]
    top = record.get("top") or record.get("results") or []
    if top and isinstance(top[0], dict):
        return str(top[0].get("label"))
    if top and isinstance(top[0], list | tuple):
        return str(top[0][0])
    raise KeyError(f"no top-1 label in record {sorted(record)}")


def compare_logs(x86_path: Path, pi_path: Path, frames: int, minimum: float = AGREEMENT) -> int:
    x86, bad_x86 = _records(x86_path)
    pi, bad_pi = _records(pi_path)
    json_ok = bad_pi == 0 and bad_x86 == 0 and len(pi) == frames and len(x86) == frames
    print(
        f"{'PASS' if json_ok else 'FAIL'} log-json pi: {len(pi)} JSON records, {bad_pi} invalid lines; "
        f"x86: {len(x86)}, {bad_x86} invalid; {frames} frames in the video"
    )
    x86_by_frame = {r.get("frame"): _top1(r) for r in x86}
    same = sum(x86_by_frame.get(r.get("frame")) == _top1(r) for r in pi)
    share = same / frames if frames else 0.0
    agree_ok = share >= minimum
    print(f"{'PASS' if agree_ok else 'FAIL'} labels-agree {same}/{frames} frames ({100 * share:.1f} %, >= {100 * minimum:.0f} % needed) top-1 equal to x86's")
    return (not json_ok) + (not agree_ok)


def _get(port: int, path: str, token: str | None, timeout: float = 10.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _first_jpeg(port: int, path: str, token: str, timeout: float = 30.0) -> bytes:
    """The first complete JPEG of an MJPEG stream (multipart parts are JPEGs from SOI to EOI)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    buffer = io.BytesIO()
    deadline = time.monotonic() + timeout
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        while time.monotonic() < deadline:
            chunk = response.read1(65536)
            if not chunk:
                break
            buffer.write(chunk)
            data = buffer.getvalue()
            start = data.find(b"\xff\xd8")
            end = data.find(b"\xff\xd9", start + 2) if start >= 0 else -1
            if end > 0:
                return data[start : end + 2]
    finally:
        connection.close()
    raise TimeoutError(f"no complete JPEG from {path} in {timeout:.0f} s")


def web(port: int, token: str) -> int:
    deadline = time.monotonic() + 120
    status, body = 0, b""
    while time.monotonic() < deadline:  # start-up under emulation takes a while
        try:
            status, body = _get(port, "/api/status", token, timeout=5)
            if status == 200:
                break
        except OSError:
            pass
        time.sleep(1)
    failures = 0
    try:
        fields = sorted(json.loads(body)) if status == 200 else []
        ok = status == 200 and bool(fields)
    except json.JSONDecodeError:
        ok, fields = False, []
    unauthorized, _ = _get(port, "/api/status", None)
    ok = ok and unauthorized == 401
    failures += not ok
    print(f"{'PASS' if ok else 'FAIL'} web-status GET /api/status with the token: HTTP {status}, JSON keys {fields[:6]}; without it: HTTP {unauthorized}")
    try:
        jpeg = _first_jpeg(port, "/stream.mjpg", token)
        frame_ok, detail = len(jpeg) > 1000, f"one frame, {len(jpeg)} bytes of JPEG"
        try:
            import cv2

            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            frame_ok = frame_ok and image is not None
            detail += f", decodes to {image.shape[1]}x{image.shape[0]}" if image is not None else ", does not decode"
        except ImportError:
            pass
    except (OSError, TimeoutError) as exc:
        frame_ok, detail = False, f"{type(exc).__name__}: {exc}"
    failures += not frame_ok
    print(f"{'PASS' if frame_ok else 'FAIL'} web-stream GET /stream.mjpg with the token: {detail}")
    return failures


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "make-video":
        make_video(Path(args[0]), Path(args[1]), int(args[2]))
    elif command == "make-inputs":
        make_inputs(Path(args[0]), Path(args[1]))
    elif command == "invoke":
        invoke(Path(args[0]), Path(args[1]))
    elif command == "compare-invoke":
        return 1 if compare_invoke(Path(args[0]), Path(args[1]), int(args[2]) if len(args) > 2 else 1) else 0
    elif command == "compare-logs":
        return 1 if compare_logs(Path(args[0]), Path(args[1]), int(args[2]), float(args[3]) if len(args) > 3 else AGREEMENT) else 0
    elif command == "web":
        return 1 if web(int(args[0]), args[1]) else 0
    else:
        sys.exit(f"unknown command {command!r}; see the docstring")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
