"""The request checks of the web application, each one ASGI middleware applied to every route (no check per handler).

Outermost first, as ``app.create_app`` stacks them:

* ``HostCheck``: the ``Host`` header must name this server (``hosts.AllowedHosts``), else 400 before anything else: a
  DNS-rebinding page, whose ``Host`` and ``Origin`` both carry its own name, reaches nothing.
* ``ActiveLimit``: at most ``max_active`` requests are served at once (each MJPEG viewer holds one); beyond it 503 at
  once, except for the ``public`` health paths, which answer in microseconds and so always tell a probe the truth.
* ``BodyLimit``: a request body over ``max_body`` bytes is refused with 413 (by its ``Content-Length``, or once that
  many bytes have arrived), one that stalls for ``body_timeout_s`` between its parts with 408.
* ``CrossSiteGuard``: a state-changing request (any method but GET, HEAD, OPTIONS) sent by a browser from another site
  (``Sec-Fetch-Site: cross-site``, or an ``Origin`` that is not the host it was sent to) gets 403; under the
  ``json_only`` path prefixes it must also be JSON with the ``X-Edge-App: 1`` header, which a cross-site form or script
  cannot send without a CORS grant (never given).
* ``TokenAuth``: with a token, every route but the ``public`` ones needs ``Authorization: Bearer TOKEN``; reading
  requests (GET, HEAD) also take ``?token=TOKEN`` (what a browser's ``<img>`` and the pages' links can carry), changes
  take it only in the header (a URL can be leaked or forged). 401 with ``WWW-Authenticate`` otherwise.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qs

from edge_app.web.hosts import AllowedHosts

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_MAX_BODY = 1 << 20  # a review batch of 5,000 names is about 200 kB
DEFAULT_BODY_TIMEOUT_S = 10.0


def token_matches(token: str, authorization: str | None, query_tokens: Iterable[str] = ()) -> bool:
    """A bearer token (``Authorization: Bearer T``) or one of ``query_tokens``, compared in constant time."""
    expected = token.encode()
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), expected):
        return True
    return any(hmac.compare_digest(v.encode(), expected) for v in query_tokens)


def cross_site(origin: str | None, host: str | None, fetch_site: str | None) -> bool:
    """Whether a browser sent the request from another site: ``Sec-Fetch-Site: cross-site``, or an ``Origin`` whose
    host is not the one the request was sent to."""
    return fetch_site == "cross-site" or (bool(origin) and str(origin).split("://", 1)[-1] != (host or ""))


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def plain(send: Send, status: int, text: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """A whole text/plain response."""
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *headers]})
    await send({"type": "http.response.body", "body": body})


def public(path: str, paths: Sequence[str], prefixes: Sequence[str] = ()) -> bool:
    path = path.rstrip("/") or "/"
    return path in paths or any(path.startswith(p) for p in prefixes)


class HostCheck:
    """400 for a request whose ``Host`` is not one of this server's names; ``scope["server"]`` is the address it arrived on."""

    def __init__(self, app: ASGIApp, hosts: AllowedHosts) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            values = [bytes(v).decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"]
            server = scope.get("server")
            refusal = self.hosts.refusal(values, str(server[0]) if server else None)
            if refusal is not None:
                log.debug("web request refused: %s", refusal)
                await plain(send, 400, f"{refusal}\n", [(b"connection", b"close")])
                return
        await self.app(scope, receive, send)


class ActiveLimit:
    """At most ``max_active`` requests in flight (streams included); the ``public`` paths are always served."""

    def __init__(self, app: ASGIApp, max_active: int, public_paths: Sequence[str] = (), counter: Callable[[int], None] | None = None) -> None:
        self.app = app
        self.max_active = max_active
        self.public_paths = tuple(public_paths)
        self.active = 0  # only touched on the event loop's thread
        self.busy = 0
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or public(scope["path"], self.public_paths):
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_active:
            self.busy += 1
            await plain(send, 503, f"busy: {self.max_active} requests are being served; try again\n", [(b"retry-after", b"1")])
            return
        self.active += 1
        if self.counter:
            self.counter(self.active)
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            if self.counter:
                self.counter(self.active)


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


class BodyLimit:
    """413 for a request body over ``max_body`` bytes: declared (``Content-Length``) or counted as it arrives; 408 for one
    that stalls for ``body_timeout_s``. Once the body is complete, ``receive`` waits as long as it likes (a stream's
    wait for the client to go away)."""

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY, body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body too large: at most {self.max_body} bytes\n"
        length = header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_body:
            await plain(send, 413, too_large, [(b"connection", b"close")])
            return
        received = 0
        started = False
        complete = False

        async def counted_receive() -> Message:
            nonlocal received, complete
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout_s)
            except TimeoutError:
                raise _TooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_body:
                    raise _TooLarge
            else:
                complete = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await plain(send, 413, too_large, [(b"connection", b"close")])
        except _TooSlow:
            if not started:
                await plain(send, 408, f"request timeout: the body stalled for {self.body_timeout_s:g} s\n", [(b"connection", b"close")])


class CrossSiteGuard:
    """403 for a state-changing request from another site (see the module doc); under ``json_only`` prefixes such a
    request must also be JSON with ``X-Edge-App: 1``."""

    def __init__(self, app: ASGIApp, json_only: Sequence[str] = ()) -> None:
        self.app = app
        self.json_only = tuple(json_only)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            if cross_site(header(scope, b"origin"), header(scope, b"host"), header(scope, b"sec-fetch-site")):
                await plain(send, 403, "forbidden: cross-site requests may not change anything\n")
                return
            if scope["path"].startswith(self.json_only) and (
                header(scope, b"x-edge-app") != "1" or not (header(scope, b"content-type") or "").startswith("application/json")
            ):
                await plain(send, 403, "forbidden: send JSON with the X-Edge-App: 1 header\n")
                return
        await self.app(scope, receive, send)


class TokenAuth:
    """With ``token``: every route but the public ones needs it (see the module doc)."""

    def __init__(self, app: ASGIApp, token: str | None, public_paths: Sequence[str] = (), public_prefixes: Sequence[str] = ()) -> None:
        self.app = app
        self.token = token
        self.public_paths = tuple(public_paths)
        self.public_prefixes = tuple(public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http" or public(scope["path"], self.public_paths, self.public_prefixes):
            await self.app(scope, receive, send)
            return
        reading = scope["method"] in SAFE_METHODS
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1")).get("token", []) if reading else []
        if token_matches(self.token, header(scope, b"authorization"), query):
            await self.app(scope, receive, send)
            return
        how = "send Authorization: Bearer TOKEN or add ?token=TOKEN" if reading else "send Authorization: Bearer TOKEN"
        await plain(send, 401, f"unauthorized: {how}\n", [(b"www-authenticate", b'Bearer realm="edge-app"')])
