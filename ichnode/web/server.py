"""uvicorn in a background thread of the node, on a socket bound before start() returns
(port 0 picks a free port; connections wait in the backlog until the server accepts them)."""
from __future__ import annotations

import socket
import threading

import uvicorn

from ichnode.config import WebConfig


class WebServer:
    def __init__(self, app, config: WebConfig):
        self.app, self.config = app, config
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    @property
    def scheme(self) -> str:
        return "https" if self.config.tls_cert else "http"

    def start(self) -> "WebServer":
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        sock.listen(128)
        self._socket = sock
        tls = {}
        if self.config.tls_cert is not None:
            tls = {"ssl_certfile": str(self.config.tls_cert), "ssl_keyfile": str(self.config.tls_key)}
        self._server = uvicorn.Server(uvicorn.Config(
            self.app, lifespan="off", log_level="warning", access_log=False,
            timeout_graceful_shutdown=5, **tls))
        self._server.config.load()  # a bad certificate or key fails here, not in the thread
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="ichnode-web", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
