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
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from edge_app.review import IMAGE_NAME, MAX_BATCH, STATIC, BadBatch, Dataset

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


def review_routes(root: Path, labels: Callable[[], Sequence[str]] | Sequence[str] = (), *, workstation: bool = False) -> list[BaseRoute]:
    """The routes for the collect folder ``root``; ``labels`` (a model's, or a function giving the running model's) are
    offered as classes. ``workstation``: also ``/`` and the paths ``edge-app review`` served before."""
    data = Dataset(root)

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
            return JSONResponse(json.loads(path.read_text()))
        except (OSError, ValueError):
            return JSONResponse({"error": f"no candidate yet: run retrain-model {root}"}, 404)

    routes: list[BaseRoute] = [
        Route("/review", page),
        Mount("/review/static", app=StaticFiles(directory=STATIC), name="review-static"),
        Route("/api/review/inbox", inbox),
        Route("/api/review/inbox/{image}", image),
        Route("/api/review/label", label, methods=["POST"]),
        Route("/api/review/discard", discard, methods=["POST"]),
        Route("/api/review/dataset.tar.gz", dataset),
        Route("/api/review/candidate", candidate),
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
