"""The API routes of the live view: ``/api/status`` (``/status``), ``/healthz`` (``/health``), ``POST /api/reload`` and
``/metrics`` (prometheus-client's ASGI app over the web view's private registry). ``docs/API.md`` documents them.

Schemas (JSON bodies), beside the routes that send them:

* ``Status``: the app's own status (``model``, ``source``, ``fps``, ``inference_ms``, ``frames``, ``dropped``,
  ``reconnects``, ``uptime_s``, ``sources`` with several, ...) plus ``last`` (the newest ``FrameResult`` or null),
  ``last_frame_age_s``, ``viewers``; with several sources ``views`` (their names) and, for ``?source=NAME``, ``view``
  and that source's own counters; ``status_error`` when the app's status failed.
* ``ReloadOutcome``: ``ok`` (swapped in), ``pending`` (still loading), ``model``, ``error``: what ``App.reload_and_wait``
  answers; 200 when ``ok``, 202 when ``pending``, else 409 (the old model keeps running).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from edge_app.web.security import Receive, Scope, Send

if TYPE_CHECKING:
    from edge_app.web.live import WebServer

PUBLIC_PATHS = ("/healthz", "/health")
RELOAD_TIMEOUT_S = 30.0
NO_STORE = {"Cache-Control": "no-store"}


class ReloadOutcome(TypedDict, total=False):
    ok: bool
    pending: bool
    model: str
    error: str


def _json(data: Any, status: int = 200) -> Response:
    import json  # noqa: PLC0415 - json.dumps with default=str: the app's status may hold paths and times

    return Response(json.dumps(data, default=str), status, media_type="application/json", headers=NO_STORE)


class _NoMetrics:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("metrics need prometheus-client: pip install prometheus-client\n", 501)(scope, receive, send)


class Asgi:
    """An ASGI function as a route endpoint (Starlette takes a plain function for ``handler(request)``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def api_routes(web: WebServer) -> list[Route]:
    """The routes of the module doc, for ``web``."""

    async def status(request: Request) -> Response:
        feed = web.feed_for({k: request.query_params.getlist(k) for k in request.query_params})
        if feed is None:
            return PlainTextResponse(f"no source {request.query_params.get('source')!r}; sources: {', '.join(web.feeds)}\n", 404)
        data = await run_in_threadpool(web.status_json, feed if "source" in request.query_params else None)
        return _json(data)

    async def healthz(request: Request) -> Response:
        ok, reason = web.health()
        return PlainTextResponse(reason + "\n", 200 if ok else 503, headers=NO_STORE)

    async def reload(request: Request) -> Response:
        if web.reload is None:
            return PlainTextResponse("this server has no model to reload\n", 501)
        outcome: dict[str, Any] = await run_in_threadpool(web.reload, RELOAD_TIMEOUT_S)
        return _json(outcome, 200 if outcome.get("ok") else 202 if outcome.get("pending") else 409)

    metrics: Any = _NoMetrics()
    if web.metrics is not None:
        from prometheus_client import make_asgi_app  # noqa: PLC0415

        metrics = Asgi(make_asgi_app(registry=web.metrics.registry))
    return [
        Route("/api/status", status),
        Route("/status", status),
        Route("/healthz", healthz),
        Route("/health", healthz),
        Route("/api/reload", reload, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
