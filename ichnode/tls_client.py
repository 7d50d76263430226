"""TLS for the node's outbound connections: C-STORE to a destination, HL7 over MLLP.

One `ClientTls` block (config.py) per peer: `ca` the peer's certificate must chain to (none: the
system's CAs), an optional client certificate and key for peers that require one, `verify` (on
unless turned off; off is warned about at `serve`) and `server_name`, the name the certificate must
carry when it is not the host the node connects to. TLS 1.2 at least.
"""
from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ichnode.config import ClientTls


def client_context(tls: ClientTls, failures: list[BaseException] | None = None) -> ssl.SSLContext:
    """An SSLContext for one outbound connection. With `failures`, the sockets it makes append the
    exception of a failed connect or handshake there (pynetdicom only logs it)."""
    if tls.verify:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=None if tls.ca is None else str(tls.ca))
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert is not None:
        context.load_cert_chain(str(tls.cert), str(tls.key), password=_no_password)
    if failures is not None:
        context.sslsocket_class = _recording_socket_class(failures)
    return context


def server_name(tls: ClientTls, host: str) -> str:
    return tls.server_name or host


def describe(exc: BaseException) -> str:
    """A short reason for a failed TLS connection, e.g. 'certificate verify failed: unable to get
    local issuer certificate'."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    return str(exc)


def _no_password():
    raise ValueError("the private key is encrypted; give an unencrypted key readable by ichnode only")


def _recording_socket_class(failures: list[BaseException]) -> type[ssl.SSLSocket]:
    class RecordingSSLSocket(ssl.SSLSocket):
        def connect(self, address):
            try:
                return super().connect(address)
            except OSError as exc:
                failures.append(exc)
                raise

    return RecordingSSLSocket
