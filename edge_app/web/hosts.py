"""The ``Host`` check every request passes (DNS rebinding), and the warning for a server beyond loopback without a token.

``AllowedHosts`` decides which ``Host`` names a server answers to; ``security.HostCheck`` applies it to every request
of the web application, before any route.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Sequence

from edge_app.errors import ConfigError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")  # noqa: S104 - names of "every interface", compared, not bound
HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?")


def _normal(host: str) -> str:
    """A host in one spelling: lower case, an IPv6 address compressed and an IPv4-mapped one as IPv4."""
    host = host.strip().lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_of(value: str) -> str | None:
    """The host of a ``Host`` header value (``name``, ``name:port``, ``1.2.3.4:80``, ``[::1]:80``) without its port,
    in one spelling (see ``_normal``); None when it is no such thing."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        try:
            return _normal(str(ipaddress.IPv6Address(host)))
        except ValueError:
            return None
    host, sep, port = value.rpartition(":")
    if not sep:
        host = value
    elif not port.isdigit():
        return None
    host = host.lower()
    return _normal(host) if HOST_NAME.fullmatch(host) else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a name) is this machine only: ``localhost``, ``127.x.x.x`` or ``::1``."""
    host = host.strip().strip("[]").lower()
    return host == "localhost" or (_is_address(host) and ipaddress.ip_address(host).is_loopback)


def machine_names() -> set[str]:
    """This machine's host name, its short form and its mDNS name (``pi``, ``pi.lan``, ``pi.local``); no DNS lookup."""
    name = socket.gethostname().strip().lower()
    if not name:
        return set()
    short = name.split(".", 1)[0]
    return {name, short, f"{short}.local"}


class AllowedHosts:
    """The names a server answers to, checked against each request's ``Host`` header (as Starlette's
    ``TrustedHostMiddleware`` does), so that a page on another site cannot reach it through DNS rebinding (a name
    of the attacker's that resolves to this device: the browser then sends that name as ``Host`` and ``Origin``,
    which the cross-site check alone cannot tell from this server's own).

    Allowed: the bound address; ``localhost``, ``127.0.0.1`` and ``::1`` when bound to loopback or every interface;
    this machine's host names (``machine_names``) when bound beyond loopback; the address the request arrived on
    (a browser that typed the device's IP address); and ``names``: exact names or addresses, ``*.example.com`` for
    a domain's names, or ``*`` for any (only behind a proxy that checks ``Host`` itself). The port is not checked.
    """

    def __init__(self, bind: str, names: Sequence[str] = (), hint: str = "") -> None:
        self.any = False
        self.suffixes: list[str] = []
        allowed: set[str] = set()
        for name in names:
            text = name.strip().lower()
            if text == "*":
                self.any = True
                continue
            bare = text[2:] if text.startswith("*.") else text
            host = _normal(bare) if _is_address(bare) else host_of(bare)
            if host is None or "*" in bare:
                raise ConfigError(f"bad host name {name!r}: expected a name (device.example), an address, *.example.com or *")
            if text.startswith("*."):
                self.suffixes.append(f".{host}")
            else:
                allowed.add(host)
        bind = bind.strip().strip("[]")
        if bind in WILDCARD_ADDRESSES:
            allowed |= {*LOOPBACK_NAMES, *machine_names()}
        elif is_loopback(bind):
            allowed |= {*LOOPBACK_NAMES, _normal(bind)}
        else:
            allowed |= {_normal(bind), *machine_names()}
        self.names = frozenset(allowed)
        self.hint = hint

    def refusal(self, values: Sequence[str], local_address: str | None = None) -> str | None:
        """None when a request whose ``Host`` header(s) are ``values``, received on ``local_address``, may be served;
        else why not, in one line."""
        if self.any:
            return None
        if len(values) != 1:
            return f"bad request: expected one Host header, got {len(values)}"
        host = host_of(values[0])
        if host is None:
            return f"bad request: malformed Host header {values[0][:100]!r}"
        if host in self.names or any(host.endswith(s) for s in self.suffixes):
            return None
        if local_address is not None and host == _normal(local_address.split("%", 1)[0]):
            return None
        return f"misdirected request: {host[:100]!r} is not a name of this server{self.hint}"


def warn_without_token(logger: logging.Logger, what: str, bind: str, token: str | None, fix: str) -> None:
    """One warning line when ``bind`` is beyond loopback and no token guards the server."""
    bind = bind.strip().strip("[]")
    if token is None and not is_loopback(bind):
        where = "every interface" if bind in WILDCARD_ADDRESSES else bind
        logger.warning("%s is served on %s without a token: anyone who can reach this device can use it; %s", what, where, fix)
