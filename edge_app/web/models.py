"""The models routes: the page at ``/models`` and its JSON API under ``/api/models/`` (``docs/API.md``).

The running bundle, the one Rollback returns to and the candidate ``retrain-model`` wrote (with its report: validation
accuracy, per-class recall, disagreement with the running model); **Deploy** swaps the candidate in through the
between-frames reload, **Rollback** brings the replaced bundle back, **Retrain** starts ``retrain-model`` in the
background where TensorFlow is installed (else the page shows the command for a workstation). The work is
``edge_app.deploy.ModelDesk``; the token, cross-site and ``Host`` checks are the application's middleware: a change is a
JSON ``POST`` with ``X-Edge-App: 1`` and the token in the ``Authorization`` header.

Schemas (JSON bodies):

* ``Overview`` (``GET /api/models``): ``running`` (``model`` id, ``folder``, ``manifest``: classes, accuracy, ...),
  ``previous`` (a manifest summary and its ``version``, or null), ``candidate`` (a manifest summary, ``report``,
  ``problem``: why it cannot be deployed, or null), ``deploy`` and ``rollback`` (``possible``, ``why_not``),
  ``retrain`` (``available``, ``command``, ``job``: ``state`` running/done/failed, ``log`` lines), ``last_error``.
* ``Outcome`` (``POST /api/models/deploy``, ``/rollback``, ``/retrain``): ``ok``; ``model`` (the id now running),
  ``version``, ``was`` on success; ``error`` (why, and what runs on) with status 409 on refusal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from edge_app.deploy import ModelDesk

STATIC = Path(__file__).resolve().parent / "static"
JSON_ONLY = ("/api/models/",)


class Outcome(TypedDict, total=False):
    ok: bool
    model: str | None
    version: str
    was: str | None
    error: str


def _answer(outcome: dict[str, Any]) -> Response:
    return JSONResponse(outcome, 200 if outcome.get("ok") else 409)


def models_routes(desk: ModelDesk) -> list[BaseRoute]:
    """The page and API for ``desk``; deploy, rollback and retrain run off the event loop (a reload waits for a frame)."""

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "models.html", headers={"Cache-Control": "no-store"})

    async def overview(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(desk.overview))

    async def deploy(request: Request) -> Response:
        return _answer(await run_in_threadpool(desk.deploy))

    async def rollback(request: Request) -> Response:
        return _answer(await run_in_threadpool(desk.rollback))

    async def retrain(request: Request) -> Response:
        return _answer(await run_in_threadpool(desk.start_retrain))

    return [
        Route("/models", page),
        Route("/api/models", overview),
        Route("/api/models/deploy", deploy, methods=["POST"]),
        Route("/api/models/rollback", rollback, methods=["POST"]),
        Route("/api/models/retrain", retrain, methods=["POST"]),
    ]
