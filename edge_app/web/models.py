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
  ``problem``: why it cannot be deployed, or null; ``comparison``: the report's line about the running model, the review
  page's own, from ``compared_with_running``), ``deploy`` and ``rollback`` (``possible``, ``why_not``),
  ``retrain`` (``available``, ``command``, ``job``: ``state`` running/done/failed, ``log`` lines), ``last_error``.
* ``Outcome`` (``POST /api/models/deploy``, ``/rollback``, ``/retrain``): ``ok``; ``model`` (the id now running),
  ``version``, ``was`` on success; ``error`` (why, and what runs on) with status 409 on refusal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def compared_with_running(report: Mapping[str, Any] | None, classes: Sequence[str] = ()) -> str | None:
    """What a candidate's ``retrain_report.json`` says about the model running when it was trained (``current``): how
    often the two disagree, or, when they share no class, that their disagreement says nothing (a new set of classes:
    "disagrees 100 %" would only say that). The review page and the models page both show this line; ``classes``: the
    candidate's, when the report does not list them. None when the report has no comparison."""
    current = report.get("current") if isinstance(report, Mapping) else None
    if not isinstance(current, Mapping) or not isinstance(current.get("disagreement"), int | float):
        return None
    assert report is not None
    known = [str(c) for c in current.get("labels") or ()]
    mine = [str(c) for c in report.get("classes") or classes]
    if known and mine and not set(mine) & set(known):
        return f"shares no class with the current model (its {len(known)} classes): a new set of classes, so how often the two disagree says nothing"
    images = current.get("images")
    line = f"disagrees with the current model on {current['disagreement'] * 100:.1f} %" + (f" of {images} images" if isinstance(images, int) else "")
    new = [str(c) for c in current.get("new_classes") or ()]
    return line + (f"; new classes: {', '.join(new)}" if new else "")


def overview_with_comparison(desk: ModelDesk) -> dict[str, Any]:
    """``desk.overview()`` with the candidate's ``comparison`` line (``compared_with_running``)."""
    page = desk.overview()
    cand = page.get("candidate")
    if isinstance(cand, dict):
        cand["comparison"] = compared_with_running(cand.get("report"), cand.get("classes") or ())
    return page


def _answer(outcome: dict[str, Any]) -> Response:
    return JSONResponse(outcome, 200 if outcome.get("ok") else 409)


def models_routes(desk: ModelDesk) -> list[BaseRoute]:
    """The page and API for ``desk``; deploy, rollback and retrain run off the event loop (a reload waits for a frame)."""

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "models.html", headers={"Cache-Control": "no-store"})

    async def overview(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(overview_with_comparison, desk))

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
