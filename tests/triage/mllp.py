"""A real MLLP listener for tests: parses each frame with the hl7 library and answers an ACK."""
from __future__ import annotations

import socket
import ssl
import threading

import hl7

SB, EB, CR = b"\x0b", b"\x1c", b"\r"


class MllpListener:
    """Answers ACK codes from `codes` in turn (the last one repeats); keeps what it received.
    With `tls` (a server context) each connection is TLS first: a failed handshake is kept in
    handshake_errors, and each session's (TLS version, client certificate common name) in
    sessions."""

    def __init__(self, port: int = 0, codes: tuple[str, ...] = ("AA",),
                 tls: ssl.SSLContext | None = None):
        self.codes, self.tls = list(codes), tls
        self.messages: list[hl7.Message] = []
        self.acks: list[str] = []
        self.sessions: list[tuple[str, str]] = []
        self.handshake_errors: list[str] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def __enter__(self) -> "MllpListener":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            conn.settimeout(5)
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    self.handshake_errors.append(str(exc))
                    conn.close()
                    continue
                subject = dict(x[0] for x in conn.getpeercert()["subject"])
                self.sessions.append((conn.version(), subject["commonName"]))
            with conn:
                buffer = b""
                while EB not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    buffer += chunk
                if EB not in buffer:
                    continue
                text = buffer[buffer.index(SB) + 1:buffer.index(EB)].decode("utf-8")
                message = hl7.parse(text)
                code = self.codes[min(len(self.messages), len(self.codes) - 1)]
                self.messages.append(message)
                self.acks.append(code)
                ack = message.create_ack(ack_code=code, application="TESTRIS", facility="TEST")
                conn.sendall(SB + str(ack).encode("utf-8") + EB + CR)
