"""Who may talk to the node: source-address allow-list, DICOM TLS, and the server that enforces both.

- The address allow-list (node.allowed_addresses, CIDRs) is checked when the TCP connection is
  accepted, before a single byte of the peer is read: a refused peer gets its connection closed and
  the node logs `connection_refused` with the address and the reason.
- TLS (tls.cert + tls.key, tls.ca for mutual TLS): the handshake runs in the connection's own
  thread with tls.handshake_timeout_s, never in the accept loop, so one peer that connects and
  stays silent cannot stop every other peer from connecting.
- Connection limits (node.max_connections, node.max_connections_per_address) are checked at
  accept too: each connection is a thread, and before its A-ASSOCIATE-RQ nothing else bounds it.
- The calling AE allow-list (node.allowed_calling_aets), the called AE title, the AE titles a
  client certificate may use (tls.certificate_aets) and the association limit
  (node.max_associations) are checked on the A-ASSOCIATE-RQ (acceptor.py); they reject with
  A-ASSOCIATE-RJ.
"""
from __future__ import annotations

import ipaddress
import socket
import socketserver
import ssl
import threading
from collections import Counter
from typing import Callable

from ichnode.config import Config
from ichnode.log import get_logger

log = get_logger("ichnode.access")


class AddressFilter:
    """allowed(address) for an IP address string; an empty allow-list allows every address."""

    def __init__(self, cidrs):
        self.networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]

    def allowed(self, address: str) -> bool:
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)


def server_tls_context(config: Config) -> ssl.SSLContext | None:
    """The SCP's TLS context, or None when tls.cert is not set. tls.ca requires client certs."""
    tls = config.tls
    if tls.cert is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # DICOM BCP 195 profiles: TLS 1.2 or later
    context.load_cert_chain(str(tls.cert), str(tls.key))
    if tls.ca is not None:
        context.load_verify_locations(cafile=str(tls.ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class ConnectionLimits:
    """Open connections, in all and per source address."""

    def __init__(self, total: int, per_address: int):
        self.total, self.per_address = total, per_address
        self.open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, address: str) -> str | None:
        """None when the connection may open (and is counted), else why not."""
        with self._lock:
            if sum(self.open.values()) >= self.total:
                return "node.max_connections reached"
            if self.open[address] >= self.per_address:
                return "node.max_connections_per_address reached"
            self.open[address] += 1
            return None

    def give_back(self, address: str) -> None:
        with self._lock:
            self.open[address] -= 1
            if self.open[address] <= 0:
                del self.open[address]


class NodeServer(socketserver.ThreadingTCPServer):
    """The node's DICOM listener: one thread per connection. The address check happens at accept,
    the TLS handshake in the connection's thread (with its own timeout, so a silent peer holds up
    nobody), then an Acceptor serves the association. on_refused(address, reason) is called for
    each refused connection."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    address_filter: AddressFilter = AddressFilter(())
    limits: ConnectionLimits = ConnectionLimits(64, 8)
    handshake_timeout_s: float = 10.0
    on_refused: Callable[[str, str], None] = staticmethod(lambda address, reason: None)

    def __init__(self, address: tuple[str, int],
                 serve: Callable[[socket.socket, str, str | None], None],
                 ssl_context: ssl.SSLContext | None = None):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.serve, self.ssl_context = serve, ssl_context
        super().__init__(address, None)

    def shutdown(self) -> None:
        """Stop accepting and close the listening socket (associations in progress run out)."""
        super().shutdown()
        self.server_close()

    def get_request(self):
        client_socket, address = self.socket.accept()
        if self.ssl_context:
            # Wrapping is cheap; the handshake happens in process_request_thread.
            client_socket = self.ssl_context.wrap_socket(
                client_socket, server_side=True, do_handshake_on_connect=False)
        return client_socket, address

    def verify_request(self, request, client_address) -> bool:
        """At accept, before a byte is read: the address allow-list, then the connection limits
        (a connection that passes is counted until process_request_thread ends)."""
        address = _host(client_address)
        reason = None
        if not self.address_filter.allowed(address):
            reason = "source address not in node.allowed_addresses"
        else:
            reason = self.limits.take(address)
        if reason is None:
            return True
        log.warning("connection_refused", reason=reason, address=address)
        self.on_refused(address, reason)
        return False

    def process_request_thread(self, request, client_address) -> None:
        address = _host(client_address)
        try:
            if isinstance(request, ssl.SSLSocket):
                try:
                    request.settimeout(self.handshake_timeout_s)
                    request.do_handshake()
                except OSError as exc:
                    reason = f"TLS handshake failed: {type(exc).__name__}: {exc}"[:300]
                    log.warning("connection_refused", reason=reason, address=address)
                    self.on_refused(address, reason)
                    return
            self.serve(request, address, _certificate_name(request))
        except Exception:  # noqa: BLE001 - one connection's failure must not reach the server loop
            log.exception("connection_failed", address=address)
        finally:
            self.limits.give_back(address)
            self.shutdown_request(request)


def _certificate_name(sock) -> str | None:
    """A TLS connection's verified client certificate common name ("" without a client
    certificate); None for plain TCP."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    subject = dict(item for rdn in (sock.getpeercert() or {}).get("subject", ()) for item in rdn)
    return subject.get("commonName", "")


def _host(client_address) -> str:
    return client_address[0] if isinstance(client_address, tuple) else str(client_address)
