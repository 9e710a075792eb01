"""Running the ASGI app under uvicorn, in one process or several sharing one listening socket."""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors import Multiprocess

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


def run(host: str, port: int, workers: int, log_level: str) -> None:
    """Serve until interrupted."""
    config = _TcpConfig(APP, factory=True, host=host, port=port, workers=workers, log_level=log_level,
                        server_header=False)
    if workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()
