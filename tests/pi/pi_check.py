"""Helpers of tests/pi/run.sh, run on the x86 host and inside the emulated Raspberry Pi root.

    python pi_check.py make-video DATASETS OUT.avi FRAMES    (host: a real MJPG video from dogs-vs-cats photos)
    python pi_check.py make-lossless IN.avi OUT.avi          (host: the same frames as this machine decodes them, FFV1)
    python pi_check.py make-inputs DATASETS OUT_DIR          (host: one real photo per shipped bundle, .npy)
    python pi_check.py decode VIDEO OUT.npz N [VIDEO OUT.npz]... (both: the first N frames as OpenCV decodes them;
                                                               more videos in the same process: one start-up)
    python pi_check.py compare-decode X86.npz PI.npz NAME [exact] (host: how far the two decodes are apart)
    python pi_check.py invoke INPUT_DIR OUT.json [KERNELS]   (both: one invoke() per shipped bundle, uint8 outputs;
                                                               KERNELS: default (what edge-app runs) or reference)
    python pi_check.py compare-invoke X86.json PI.json [MAX] [NAME] (host: |diff| <= MAX (1) per output, same top-1)
    python pi_check.py compare-logs X86.jsonl PI.jsonl FRAMES [MIN] [NAME] (host: valid JSON, top-1 equal on >= MIN (99 %))
    python pi_check.py web PORT TOKEN                        (host: /api/status and one /stream.mjpg frame)

Only the standard library and NumPy at import time: the Pi side has no OpenCV wheel of its own (apt's
python3-opencv) and no TensorFlow. Each check prints one line, ``PASS name detail`` or ``FAIL name detail``
(``INFO name detail`` for a measurement that is not a check), and exits non-zero on a failure.
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

AGREEMENT = 0.99
KERNELS = ("default", "reference")  # the runtime's own choice (what edge-app runs), or TFLite's reference kernels (BUILTIN_REF)


def bundles() -> list[str]:
    """The shipped bundles (models/*, installed as edge_app_models) whose invoke() is compared across machines."""
    from edge_app.model import shipped_models

    return sorted(shipped_models())


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


def make_lossless(source: Path, out: Path) -> None:
    """``source``'s frames as this machine's OpenCV decodes them, in a lossless FFV1 AVI: every OpenCV decodes it to the
    same pixels, so a comparison of labels across machines on it is not one of JPEG decoders."""
    import cv2

    cap = cv2.VideoCapture(str(source))
    writer: cv2.VideoWriter | None = None
    frames = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"FFV1"), 30.0, (frame.shape[1], frame.shape[0]))
            if not writer.isOpened():
                sys.exit(f"OpenCV cannot write FFV1 to {out}")
        writer.write(frame)
        frames += 1
    cap.release()
    if writer is None:
        sys.exit(f"no frames in {source}")
    writer.release()
    print(f"wrote {out}: {frames} frames of {source}, FFV1 (lossless)")


def decode(video: Path, out: Path, count: int) -> None:
    """The first ``count`` frames of ``video`` as OpenCV decodes them here (full size, BGR)."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    frames: list[np.ndarray] = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        sys.exit(f"OpenCV {cv2.__version__} decoded no frames of {video}")
    np.savez_compressed(out, frames=np.stack(frames), opencv=np.array(cv2.__version__))
    print(f"decoded {len(frames)} frames of {video} with OpenCV {cv2.__version__}")


def compare_decode(x86_path: Path, pi_path: Path, name: str, exact: bool) -> int:
    """How far the Pi's decoded frames are from x86's; with ``exact``, a check that they are identical, else a measurement."""
    with np.load(x86_path) as a, np.load(pi_path) as b:
        x86, pi = a["frames"].astype(np.int16), b["frames"].astype(np.int16)
        versions = f"OpenCV {a['opencv']} (x86) vs {b['opencv']} (pi)"
    if x86.shape != pi.shape:
        print(f"FAIL {name} frame arrays differ in shape: x86 {x86.shape}, pi {pi.shape}")
        return 1
    diff = np.abs(x86 - pi)
    detail = (f"{len(x86)} frames {x86.shape[2]}x{x86.shape[1]}: max |diff| {int(diff.max())}, {100 * float(np.mean(diff > 0)):.1f} % of values differ, "
              f"mean {float(diff.mean()):.3f}; {versions}")
    if not exact:
        print(f"INFO {name} {detail}")
        return 0
    ok = int(diff.max()) == 0
    print(f"{'PASS' if ok else 'FAIL'} {name} {detail}")
    return 0 if ok else 1


def _bundle_dir(name: str) -> Path:
    from edge_app.model import default_model_dir

    return default_model_dir(name)


def make_inputs(datasets: Path, out_dir: Path) -> None:
    """One real photo per bundle, resized to its input size: the same bytes go to both machines."""
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    photo = _photos(datasets, 1, offset=7)[0]
    names = bundles()
    for name in names:
        manifest = json.loads((_bundle_dir(name) / "manifest.json").read_text())
        size = (int(manifest["input"]["width"]), int(manifest["input"]["height"]))
        pixels = cv2.resize(photo, size, interpolation=cv2.INTER_AREA).astype(np.uint8)[None]
        np.save(out_dir / f"{name}.npy", pixels)
    print(f"wrote {len(names)} model inputs to {out_dir}")


def invoke(input_dir: Path, out: Path, kernels: str = "default") -> None:
    """Run each installed bundle once on its saved input and write the uint8 outputs: with the kernels the runtime
    chooses itself, as edge-app runs it (``default``), or with TFLite's portable reference kernels (``reference``)."""
    from edge_app.runtime import get_runtime

    if kernels not in KERNELS:
        sys.exit(f"kernels must be one of {KERNELS}, got {kernels!r}")
    runtime = get_runtime()
    options: dict[str, object] = {}
    if kernels == "reference":
        options["experimental_op_resolver_type"] = sys.modules[runtime.interpreter.__module__].OpResolverType.BUILTIN_REF
    result: dict[str, object] = {"runtime": f"{runtime.name} {runtime.version}", "numpy": np.__version__, "kernels": kernels}
    names = bundles()
    for name in names:
        folder = _bundle_dir(name)
        interpreter = runtime.interpreter(model_path=str(folder / "model.tflite"), num_threads=1, **options)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.load(input_dir / f"{name}.npy"))
        interpreter.invoke()
        output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        result[name] = {"dtype": str(output.dtype), "output": output.reshape(-1).astype(int).tolist(), "model": str(folder)}
    out.write_text(json.dumps(result))
    print(f"invoked {', '.join(names)} with {result['runtime']}, {kernels} kernels (NumPy {np.__version__})")


def compare_invoke(x86_path: Path, pi_path: Path, max_diff: int = 1, name: str = "invoke", gate_diff: bool = True) -> int:
    """Each bundle's uint8 outputs within ``max_diff`` of x86's and the same top-1 class (``gate_diff`` false: the
    difference is reported, only the top-1 class is checked)."""
    x86, pi = json.loads(x86_path.read_text()), json.loads(pi_path.read_text())
    failures = 0
    for bundle in sorted(set(x86) & set(pi) - {"runtime", "numpy", "kernels"}):
        a, b = x86[bundle], pi[bundle]
        ok = a["dtype"] == b["dtype"] == "uint8" and len(a["output"]) == len(b["output"])
        diff = int(np.max(np.abs(np.array(a["output"]) - np.array(b["output"])))) if ok else -1
        same_top1 = int(np.argmax(a["output"])) == int(np.argmax(b["output"]))
        ok = ok and same_top1 and (diff <= max_diff or not gate_diff)
        failures += not ok
        bound = f"(<= {max_diff} allowed)" if gate_diff else "(measured, not a bound)"
        print(
            f"{'PASS' if ok else 'FAIL'} {name}-{bundle} max |uint8 diff| {diff} {bound} "
            f"x86 {x86['runtime']} vs pi {pi['runtime']}, {pi.get('kernels', 'default')} kernels; "
            f"top-1 index x86 {int(np.argmax(a['output']))} pi {int(np.argmax(b['output']))}"
        )
    missing = sorted(set(x86) ^ set(pi))
    if missing:
        print(f"FAIL {name}-bundles only one side invoked {missing}")
        failures += 1
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


def compare_logs(x86_path: Path, pi_path: Path, frames: int, minimum: float = AGREEMENT, name: str = "labels-agree") -> int:
    x86, bad_x86 = _records(x86_path)
    pi, bad_pi = _records(pi_path)
    json_ok = bad_pi == 0 and bad_x86 == 0 and len(pi) == frames and len(x86) == frames
    print(
        f"{'PASS' if json_ok else 'FAIL'} log-json{name.removeprefix('labels-agree')} pi: {len(pi)} JSON records, {bad_pi} invalid lines; "
        f"x86: {len(x86)}, {bad_x86} invalid; {frames} frames in the video"
    )
    x86_by_frame = {r.get("frame"): _top1(r) for r in x86}
    differ = [r.get("frame") for r in pi if x86_by_frame.get(r.get("frame")) != _top1(r)]
    same = len(pi) - len(differ)
    share = same / frames if frames else 0.0
    agree_ok = share >= minimum
    print(f"{'PASS' if agree_ok else 'FAIL'} {name} {same}/{frames} frames ({100 * share:.1f} %, >= {100 * minimum:.0f} % needed) top-1 equal to x86's"
          + (f"; differ at frames {differ[:10]}" if differ else ""))
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
    elif command == "make-lossless":
        make_lossless(Path(args[0]), Path(args[1]))
    elif command == "make-inputs":
        make_inputs(Path(args[0]), Path(args[1]))
    elif command == "decode":
        for video, out in [(args[0], args[1]), *zip(args[3::2], args[4::2], strict=True)]:
            decode(Path(video), Path(out), int(args[2]))
    elif command == "compare-decode":
        return compare_decode(Path(args[0]), Path(args[1]), args[2], len(args) > 3 and args[3] == "exact")
    elif command == "invoke":
        invoke(Path(args[0]), Path(args[1]), args[2] if len(args) > 2 else "default")
    elif command == "compare-invoke":
        max_diff = int(args[2]) if len(args) > 2 else 1
        return 1 if compare_invoke(Path(args[0]), Path(args[1]), max(max_diff, 0), args[3] if len(args) > 3 else "invoke", max_diff >= 0) else 0
    elif command == "compare-logs":
        minimum = float(args[3]) if len(args) > 3 else AGREEMENT
        return 1 if compare_logs(Path(args[0]), Path(args[1]), int(args[2]), minimum, args[4] if len(args) > 4 else "labels-agree") else 0
    elif command == "web":
        return 1 if web(int(args[0]), args[1]) else 0
    else:
        sys.exit(f"unknown command {command!r}; see the docstring")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
