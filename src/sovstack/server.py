"""Running the ASGI app under uvicorn, in one process or several sharing one listening socket."""

from __future__ import annotations

import errno
import socket
import tempfile

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.supervisors import Multiprocess

from sovstack.core import request_id
from sovstack.core.errors import BadInput
from sovstack.core.settings import share_metrics

APP = "sovstack.app:app_from_environment"


class _TcpConfig(uvicorn.Config):
    """Binds the shared socket as IPPROTO_TCP so that accepted connections get TCP_NODELAY.

    Accepted sockets inherit the listener's ``proto``, and asyncio sets TCP_NODELAY only when it is
    IPPROTO_TCP; uvicorn's own multi-worker socket has proto 0, so every keep-alive answer waited
    ~40 ms for the client's delayed ACK (uvicorn issue #3149). Measured: 90 → 960 req/s.
    """

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


def ensure_free(host: str, port: int) -> None:
    """Refuse, before any work is done, an address this machine cannot listen on: a busy port, an unknown host.

    uvicorn finds out only when it binds, after migrations and demo seeding, and ends with exit code 3.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise BadInput(f"cannot listen on {host!r}: {exc.strerror}; give --host an address of this machine",
                       field="host") from exc
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BadInput(f"port {port} on {host} is in use by another program: choose another with --port",
                               field="port") from exc
            raise BadInput(f"cannot listen on {host} port {port}: {exc.strerror}", field="host") from exc


def run(host: str, port: int, workers: int, log_level: str) -> None:
    """Serve until interrupted."""
    config = _TcpConfig(APP, factory=True, host=host, port=port, workers=workers, log_level=log_level,
                        server_header=False, log_config=request_id.log_config(LOGGING_CONFIG, log_level))
    if workers > 1:
        # The workers count into files in one fresh folder, so that a scrape, whichever worker answers
        # it, sums them all (prometheus_client's multiprocess mode); it goes when the server stops.
        with tempfile.TemporaryDirectory(prefix="sovstack-metrics-") as folder:
            share_metrics(folder)
            Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()
