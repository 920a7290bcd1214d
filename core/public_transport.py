"""An HTTP transport that connects to public addresses only, checked when it connects.

Checking a webhook's host name before a delivery is not enough: the name can resolve to a
public address for the check and to an internal one for the connection a moment later (DNS
rebinding). Here the addresses the connection uses are the ones checked."""

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import httpcore
import httpx

from core.webhook_rules import refused_address


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, refused: Callable[[str], bool]) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._refused = refused

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as err:
            raise httpcore.ConnectError(f"host {host!r} cannot be resolved") from err
        addresses = [str(info[4][0]) for info in infos]
        if not addresses or any(self._refused(a) for a in addresses):
            raise httpcore.ConnectError(f"host {host!r} is not a public address")
        # TLS still checks the certificate against the host name (httpcore passes it on).
        return await self._inner.connect_tcp(addresses[0], port, timeout=timeout,
                                             local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("no local sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def public_only_transport(limits: httpx.Limits, refused: Callable[[str], bool] = refused_address
                          ) -> httpx.AsyncHTTPTransport:
    """httpx's transport, on a connection pool that uses the backend above (httpx has no
    parameter for it, so its pool is replaced); no proxy from the environment either.
    `refused` tells the addresses it may not connect to."""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry, network_backend=PublicOnlyBackend(refused))
    return transport
