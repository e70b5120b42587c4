"""The web application of edge-app: one ASGI app (Starlette, served by uvicorn) on ``--http``.

``WebServer`` (``live.py``) is the live view as a sink of the frame loop and the lifecycle of the whole application;
``create_app`` (``app.py``) assembles the routers (``live.py``, ``api.py``, ``review.py``) behind the request checks of
``security.py`` and ``hosts.py``; ``server.py`` serves it with bounds on connections. ``docs/API.md`` documents the
routes. ``WebServer`` is imported on first use, so the review page alone (``edge-app review``) needs no OpenCV.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_app.web.app import create_app
    from edge_app.web.live import WebServer

__all__ = ["WebServer", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "WebServer":
        from edge_app.web.live import WebServer  # noqa: PLC0415

        return WebServer
    if name == "create_app":
        from edge_app.web.app import create_app  # noqa: PLC0415

        return create_app
    raise AttributeError(f"module 'edge_app.web' has no attribute {name!r}")
