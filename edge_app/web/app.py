"""``create_app``: the one ASGI application of the edge-app process (Starlette), a router per concern behind one set of
request checks.

* ``live.py``: ``/``, ``/stream.mjpg``, ``/snapshot.jpg`` (when there is a live view: ``edge-app --http``);
* ``api.py``: ``/api/status``, ``/healthz``, ``POST /api/reload``, ``/metrics`` (the same);
* ``review.py``: ``/review`` and ``/api/review/*`` (with ``--collect DIR``, or alone for ``edge-app review DIR``);
* ``models.py``: ``/models`` and ``/api/models/*``: the running and candidate bundles, deploy, rollback, retrain
  (``edge_app.deploy.ModelDesk``; with a live view).

Middleware, outermost first (``security.py``): the ``Host`` check, the bound on requests served at once, the bound on
request bodies, the cross-site guard for changes, the token. ``server.py`` serves the result with uvicorn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from edge_app.web.api import PUBLIC_PATHS, api_routes
from edge_app.web.hosts import AllowedHosts
from edge_app.web.security import DEFAULT_BODY_TIMEOUT_S, DEFAULT_MAX_BODY, ActiveLimit, BodyLimit, CrossSiteGuard, HostCheck, TokenAuth

if TYPE_CHECKING:
    from edge_app.deploy import ModelDesk
    from edge_app.doctor import FeatureFunction
    from edge_app.web.live import WebServer

DEFAULT_MAX_ACTIVE = 32


def create_app(
    *,
    live: WebServer | None = None,
    review: Path | None = None,
    labels: Callable[[], Sequence[str]] | Sequence[str] = (),
    models: ModelDesk | None = None,
    token: str | None = None,
    hosts: AllowedHosts,
    max_active: int = DEFAULT_MAX_ACTIVE,
    max_body: int = DEFAULT_MAX_BODY,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    input_size: Callable[[], tuple[int, int] | None] | None = None,
    features: Callable[[], FeatureFunction | None] | None = None,
) -> Starlette:
    """The application: ``live`` (a ``WebServer``: its pages, stream and API), ``review`` (a collect folder: the review
    page and API; alone, it is ``edge-app review``'s workstation mode), behind the checks of the module doc.
    ``input_size`` and ``features``: the model's, for the review page's dataset doctor (``edge_app.web.review.review_routes``)."""
    routes: list[BaseRoute] = []
    json_only: tuple[str, ...] = ()
    public_prefixes: tuple[str, ...] = ()
    if live is not None:
        from edge_app.web.live import live_routes  # noqa: PLC0415 - the live view needs OpenCV; review alone does not

        routes += live_routes(live) + api_routes(live)
    if models is not None:
        from edge_app.web.models import JSON_ONLY as MODELS_JSON_ONLY  # noqa: PLC0415
        from edge_app.web.models import models_routes  # noqa: PLC0415

        routes += models_routes(models)
        json_only += MODELS_JSON_ONLY
    if review is not None:
        from edge_app.web.review import JSON_ONLY, LEGACY_JSON_ONLY, PUBLIC_PREFIXES, review_routes  # noqa: PLC0415

        workstation = live is None
        routes += review_routes(review, labels, workstation=workstation, input_size=input_size, features=features)
        json_only += JSON_ONLY + (LEGACY_JSON_ONLY if workstation else ())
        public_prefixes = PUBLIC_PREFIXES
        if workstation:
            routes.append(Route("/healthz", _ok))
    hint = " ".join(sorted({r.path for r in routes if isinstance(r, Route) and "{" not in r.path and r.path.count("/") <= 2 and r.path != "/index.html"}))

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"not found: {request.url.path}; try {hint}\n", 404)

    def count(active: int) -> None:
        if live is not None:
            live.active = active

    return Starlette(
        routes=routes,
        middleware=[
            Middleware(HostCheck, hosts=hosts),
            Middleware(ActiveLimit, max_active=max_active, public_paths=PUBLIC_PATHS, counter=count),
            Middleware(BodyLimit, max_body=max_body, body_timeout_s=body_timeout_s),
            Middleware(CrossSiteGuard, json_only=json_only),
            Middleware(TokenAuth, token=token, public_paths=PUBLIC_PATHS, public_prefixes=public_prefixes),
        ],
        exception_handlers={404: not_found},
    )


async def _ok(request: Request) -> Any:
    return PlainTextResponse("ok\n")
