"""The two request checks the live view (``web.py``) and the review page (``review/``) share.

``token_matches``: a bearer token (``Authorization: Bearer T``) or ``?token=T``, compared in constant time.
``cross_site``: whether a browser sent the request from another site (``Sec-Fetch-Site: cross-site``, or an
``Origin`` whose host is not the one the request was sent to); state-changing requests refuse those.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable


def token_matches(token: str, authorization: str | None, query_tokens: Iterable[str] = ()) -> bool:
    expected = token.encode()
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), expected):
        return True
    return any(hmac.compare_digest(v.encode(), expected) for v in query_tokens)


def cross_site(origin: str | None, host: str | None, fetch_site: str | None) -> bool:
    return fetch_site == "cross-site" or (bool(origin) and str(origin).split("://", 1)[-1] != (host or ""))
