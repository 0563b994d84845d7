"""What keeps hostile or slow clients out, below the endpoints: a Host allow-list (DNS
rebinding), refusal of cross-origin posts (a form on another site), and a protocol that closes
connections whose request headers do not arrive in time (slowloris)."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from uvicorn.protocols.http.h11_impl import H11Protocol

from im2text.serve._errors import ApiError, error_response
from im2text.serve.config import ServeConfig

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _hostname(value: str) -> str:
    """`example.com:8000` -> `example.com`; `[::1]:8000` -> `::1`."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class HostGuard:
    """400 for a Host header the server does not answer to; 403 for a cross-origin POST."""

    def __init__(self, app: Any, config: ServeConfig) -> None:
        self.app = app
        self.any_host = "*" in config.allowed_hosts
        self.hosts = (
            _LOOPBACK_NAMES | {config.host.lower()} | {h.lower() for h in config.allowed_hosts}
        )
        self.any_ip = config.host in ("0.0.0.0", "::")
        self.origins = {o.rstrip("/").lower() for o in config.allowed_origins}

    def _host_ok(self, host: str) -> bool:
        name = _hostname(host)
        return self.any_host or name in self.hosts or (self.any_ip and _is_ip(name))

    def _origin_ok(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self.origins:
            return True
        parts = urlsplit(origin)
        return bool(parts.netloc) and parts.netloc == host.strip().lower()  # same origin

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k: v.decode("latin-1") for k, v in scope["headers"] if k in (b"host", b"origin")}
        host = headers.get(b"host", "")
        error = None
        if not self._host_ok(host):
            error = ApiError(
                400, "host_not_allowed", f"this server does not answer to host {host!r}"
            )
        elif (
            scope["method"] not in _SAFE_METHODS
            and b"origin" in headers
            and not self._origin_ok(headers[b"origin"], host)
        ):
            error = ApiError(
                403,
                "cross_origin_refused",
                f"requests from pages of {headers[b'origin']!r} are not allowed "
                "(see allowed_origins)",
            )
        if error is None:
            await self.app(scope, receive, send)
            return
        resp = error_response(error)
        await send({"type": "http.response.start", "status": resp.status_code,
                    "headers": resp.raw_headers})  # fmt: skip
        await send({"type": "http.response.body", "body": resp.body})


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that closes a connection whose request headers have not all
    arrived `header_timeout` seconds after it opened (or after its previous response): a
    client sending a header byte now and then no longer holds a connection for ever."""

    header_timeout: float = 10.0
    _header_timer: Any = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        waiting = self.cycle is None or self.cycle.response_complete  # no request under way
        if waiting and not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request's headers are complete
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the next request's headers get the same time

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def uvicorn_options(config: ServeConfig) -> dict[str, Any]:
    """The uvicorn.Config keywords `run()` serves with (tests start servers with them too)."""
    protocol = type("Protocol", (GuardedH11Protocol,), {"header_timeout": config.header_timeout_s})
    return {
        "http": protocol,
        "limit_concurrency": config.max_connections,
        "timeout_keep_alive": 5,
        "server_header": False,
        "proxy_headers": False,  # client addresses are not taken from headers anyone can set
    }
