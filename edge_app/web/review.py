"""The review routes: the labelling page at ``/review`` and its JSON API under ``/api/review/`` (``docs/API.md``).

Served by the edge-app process itself when ``--collect DIR`` and ``--http`` are both set (the same port and token as the
live view), and by ``edge-app review DIR`` on a workstation (review routes only; there ``/`` is the page too and the
earlier paths, ``/api/inbox``, ``/api/label``, ... answer as before). The collect folder's operations are
``edge_app.review.Dataset``; the token, cross-site and ``Host`` checks are the application's middleware
(``security.py``): a change must be JSON with ``X-Edge-App: 1`` and the token in the ``Authorization`` header.

Schemas (JSON bodies):

* ``Inbox`` (``GET /api/review/inbox``): ``items`` (each ``image``, ``label``, ``score``, ``zone``, ``time``,
  ``reasons``, ``model``: the prediction saved beside it, nulls for an image dropped in by hand; lowest score first),
  ``classes`` (the classes in ``train/`` and the running model's labels), ``counts`` (images per class in ``train/``).
* ``LabelRequest`` (``POST /api/review/label``): ``images`` (up to 5,000 inbox names), ``label`` (the class); answered
  with ``moved`` (the names moved into ``train/<label>/``) and ``counts``.
* ``DiscardRequest`` (``POST /api/review/discard``): ``images``; answered with ``discarded``.
* ``Refusal`` (400): ``error`` and, for bad names, ``bad`` (every bad entry, as sent): nothing was changed.
* ``Doctor`` (``GET /api/review/doctor``): what ``edge_app.doctor.examine`` finds in ``train/`` (and ``val/``):
  ``findings`` (each ``kind``, ``message``, ``files``, ``severity``, ``groups``; serious first), ``photos`` (how many
  were checked) and ``checked`` (``small_images``: the input size used or null, ``zones``, ``mislabels``). Query:
  ``input_size=N`` (else the running model's, when the application gives it), ``zones=1|0`` (else: whether the inbox
  holds zone crops). It reads the photos and changes nothing; signatures are kept between requests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from edge_app.review import IMAGE_NAME, MAX_BATCH, STATIC, BadBatch, Dataset
from edge_app.web.models import compared_with_running

if TYPE_CHECKING:
    from edge_app.doctor import FeatureFunction

PUBLIC_PREFIXES = ("/review/static/",)  # the page's own CSS and script: no secret, loaded without the token
JSON_ONLY = ("/api/review/",)
LEGACY_JSON_ONLY = ("/api/label", "/api/discard")


class LabelRequest(TypedDict):
    images: list[str]
    label: str


class DiscardRequest(TypedDict):
    images: list[str]


class Refusal(TypedDict, total=False):
    error: str
    bad: list[Any]


def _refused(exc: ValueError) -> Response:
    body: Refusal = {"error": str(exc)}
    if isinstance(exc, BadBatch):
        body["bad"] = exc.bad
    return JSONResponse(body, 400)


async def _names(request: Request) -> tuple[list[Any], dict[str, Any]]:
    try:
        payload = await request.json()
    except ValueError:
        raise ValueError("expected a JSON body") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("images"), list) or len(payload["images"]) > MAX_BATCH:
        raise ValueError(f'expected {{"images": [up to {MAX_BATCH} names], ...}}')
    return payload["images"], payload


def _zoned(items: Sequence[dict[str, Any]]) -> bool:
    """Whether the inbox holds zone crops (what ``--collect`` saved with zones set): the doctor then asks for a 'none' class."""
    from edge_app.zones import WHOLE_FRAME  # noqa: PLC0415

    return any(isinstance(i.get("zone"), str) and i["zone"] != WHOLE_FRAME and not i["zone"].endswith(f".{WHOLE_FRAME}") for i in items)


def review_routes(root: Path, labels: Callable[[], Sequence[str]] | Sequence[str] = (), *, workstation: bool = False,
                  input_size: Callable[[], tuple[int, int] | None] | None = None,
                  features: Callable[[], FeatureFunction | None] | None = None) -> list[BaseRoute]:
    """The routes for the collect folder ``root``; ``labels`` (a model's, or a function giving the running model's) are
    offered as classes. ``workstation``: also ``/`` and the paths ``edge-app review`` served before. ``input_size`` and
    ``features`` (functions giving the running model's input (height, width) and a feature function, e.g.
    ``edge_app.doctor.model_features(classifier)``: the same function object while the model is the same, since the
    features are cached by it, and an interpreter of its own, not the frame loop's) let the doctor check small photos
    and mislabels by default."""
    data = Dataset(root)
    from edge_app.doctor import SignatureCache  # noqa: PLC0415 - OpenCV, only where the review routes are served

    doctor_cache = SignatureCache()

    def offered() -> list[str]:
        return list(labels() if callable(labels) else labels)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def inbox(request: Request) -> Response:
        def read() -> dict[str, Any]:
            counts = data.classes()
            return {"items": data.inbox_items(), "classes": sorted(set(counts) | set(offered())), "counts": counts}

        return JSONResponse(await run_in_threadpool(read))

    async def image(request: Request) -> Response:
        name = request.path_params["image"]
        if not IMAGE_NAME.fullmatch(name) or not (data.inbox / name).is_file():
            return PlainTextResponse("not found\n", 404)
        return FileResponse(data.inbox / name, media_type="image/jpeg")

    async def label(request: Request) -> Response:
        try:
            names, payload = await _names(request)
            moved = await run_in_threadpool(data.move, names, payload.get("label"))  # type: ignore[arg-type]  # checked by move()
        except ValueError as exc:  # a bad label or any bad name: nothing was moved
            return _refused(exc)
        return JSONResponse({"moved": moved, "counts": await run_in_threadpool(data.classes)})

    async def discard(request: Request) -> Response:
        try:
            names, _ = await _names(request)
            gone = await run_in_threadpool(data.discard, names)
        except ValueError as exc:  # any bad name: nothing was deleted
            return _refused(exc)
        return JSONResponse({"discarded": gone})

    async def dataset(request: Request) -> Response:
        archive = await run_in_threadpool(data.tar_gz)
        return Response(archive, media_type="application/gzip",
                        headers={"Content-Disposition": f'attachment; filename="{root.name or "dataset"}.tar.gz"'})

    async def candidate(request: Request) -> Response:
        path = root / "candidate" / "retrain_report.json"
        try:
            report = json.loads(path.read_text())
            if isinstance(report, dict):  # the line the models page shows too (one function)
                report["comparison"] = compared_with_running(report)
            return JSONResponse(report)
        except (OSError, ValueError):
            return JSONResponse({"error": f"no candidate yet: run retrain-model {root}"}, 404)

    async def doctor(request: Request) -> Response:
        from edge_app.doctor import DoctorError, examine  # noqa: PLC0415

        query = request.query_params
        try:
            side = int(query["input_size"]) if "input_size" in query else None
            if side is not None and not 1 <= side <= 10_000:
                raise ValueError
        except ValueError:
            return JSONResponse({"error": f"input_size must be a number of pixels from 1 to 10000, got {query['input_size']!r}"}, 400)
        if query.get("zones", "") not in ("", "0", "1"):
            return JSONResponse({"error": f"zones must be 0 or 1, got {query['zones']!r}"}, 400)

        def check() -> dict[str, Any]:
            size = (side, side) if side is not None else (input_size() if input_size is not None else None)
            zones = query["zones"] == "1" if query.get("zones") else _zoned(data.inbox_items())
            feature = features() if features is not None else None
            findings = examine(root, input_size=size, zones=zones, features=feature, cache=doctor_cache)
            return {"findings": [f.to_json() for f in findings], "photos": len(doctor_cache.signatures),
                    "checked": {"small_images": list(size) if size else None, "zones": zones, "mislabels": feature is not None}}

        try:
            return JSONResponse(await run_in_threadpool(check))
        except DoctorError as exc:
            return JSONResponse({"error": str(exc)}, 400)

    routes: list[BaseRoute] = [
        Route("/review", page),
        Mount("/review/static", app=StaticFiles(directory=STATIC), name="review-static"),
        Route("/api/review/inbox", inbox),
        Route("/api/review/inbox/{image}", image),
        Route("/api/review/label", label, methods=["POST"]),
        Route("/api/review/discard", discard, methods=["POST"]),
        Route("/api/review/dataset.tar.gz", dataset),
        Route("/api/review/candidate", candidate),
        Route("/api/review/doctor", doctor),
    ]
    if workstation:  # edge-app review: the page at / too, and its earlier paths
        routes += [
            Route("/", page),
            Route("/api/inbox", inbox),
            Route("/inbox/{image}", image),
            Route("/api/label", label, methods=["POST"]),
            Route("/api/discard", discard, methods=["POST"]),
            Route("/api/dataset.tar.gz", dataset),
            Route("/api/candidate", candidate),
        ]
    return routes
