"""What the configuration exposes to the network: warnings `ichnode serve` prints when it starts.

`exposure_warnings(config)` is pure (no sockets, no name lookups); `warn(config)` logs each warning
(structlog, level warning) and prints it to stderr, where an operator starting the node sees it.
"""
from __future__ import annotations

import ipaddress
import sys

from ichnode.config import Config, DimseDestination
from ichnode.log import get_logger

log = get_logger("ichnode.exposure")


def is_loopback(host: str) -> bool:
    """True only for an address or name that stays on this machine. Anything else, a host name
    included (it may resolve to any interface), counts as beyond loopback."""
    host = host.strip().strip("[]")
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _where(host: str, port: int) -> str:
    everywhere = host.strip() in ("", "0.0.0.0", "::")
    return f"{host or '*'}:{port}" + (" (all interfaces)" if everywhere else "")


def exposure_warnings(config: Config) -> list[str]:
    """One sentence per exposure: listeners beyond loopback with no allow-list, and outbound TLS
    without certificate checks."""
    node, web = config.node, config.web
    open_lists = not node.allowed_calling_aets and not node.allowed_addresses
    warnings = []
    if open_lists and not is_loopback(node.host):
        warnings.append(
            f"DICOM listener on {_where(node.host, node.port)} accepts associations from any address "
            "and any calling AE title: node.allowed_addresses and node.allowed_calling_aets are empty")
    if web.enabled and not is_loopback(web.host):
        if open_lists:
            warnings.append(
                f"web server on {_where(web.host, web.port)} is reachable beyond loopback while "
                "node.allowed_addresses and node.allowed_calling_aets are empty; only its logins "
                "guard the worklist")
        if web.tls_cert is None and web.secure_cookie != "always":  # always: TLS ends at a proxy
            warnings.append(
                f"web server on {_where(web.host, web.port)} serves plain HTTP beyond loopback: "
                "passwords and patient names cross the network unencrypted (set web.tls_cert and "
                "web.tls_key, or web.secure_cookie: always behind a TLS proxy)")
    for i, dest in enumerate(config.destinations):
        if isinstance(dest, DimseDestination) and dest.tls is not None and not dest.tls.verify:
            warnings.append(f"destinations[{i}] ({dest.name}): tls.verify is false, the peer's "
                            "certificate is not checked")
    mllp = config.notify.mllp
    if mllp is not None and mllp.tls is not None and not mllp.tls.verify:
        warnings.append("notify.mllp: tls.verify is false, the listener's certificate is not checked")
    return warnings


def warn(config: Config, stream=None) -> list[str]:
    """Log and print each warning (none: silent); returns them."""
    warnings = exposure_warnings(config)
    stream = sys.stderr if stream is None else stream
    for text in warnings:
        log.warning("exposure", warning=text)
        print(f"ichnode: WARNING: {text}", file=stream, flush=True)
    return warnings
