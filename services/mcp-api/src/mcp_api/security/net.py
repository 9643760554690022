"""Who is really on the other end: client IP and scheme, believing X-Forwarded-* only from trusted proxies.

A proxy appends the address it received the request from to `X-Forwarded-For`, so the list reads
`client, proxy1, proxy2` and the TCP peer is the last proxy. Walking from the right, every hop that
is a trusted proxy is skipped; the first untrusted address is the client. Anything left of it was
written by the client itself and is ignored (it is trivially forged).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: list[IPNetwork] = []
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(
                    f"SECURE_AGENT_TRUSTED_PROXIES entry {entry!r} is not an IP address or CIDR"
                ) from exc

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str | None) -> bool:
        if not address or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client_ip(self, scope: Scope) -> str:
        """The client's address as far as trusted proxies vouch for it."""
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if self.trusts(peer):
            hops = _forwarded_for(scope)
            for hop in reversed(hops):
                if not self.trusts(hop):
                    peer = hop if _is_ip(hop) else peer
                    break
            else:
                if hops and _is_ip(hops[0]):
                    peer = hops[0]
        return peer

    def is_https(self, scope: Scope) -> bool:
        """The original request used https: directly, or by a trusted proxy's X-Forwarded-Proto."""
        if scope.get("scheme") == "https":
            return True
        client = scope.get("client")
        if client and self.trusts(client[0]):
            proto = _header(scope, b"x-forwarded-proto")
            if proto:
                return proto.split(",")[0].strip().lower() == "https"
        return False


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _forwarded_for(scope: Scope) -> list[str]:
    hops: list[str] = []
    for key, value in scope.get("headers", ()):
        if key == b"x-forwarded-for":
            hops += [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
    # "[::1]:443" / "1.2.3.4:5678" forms some proxies write: keep the address only.
    cleaned = []
    for hop in hops:
        if hop.startswith("["):
            hop = hop[1:].split("]")[0]
        elif hop.count(":") == 1:
            hop = hop.split(":")[0]
        cleaned.append(hop)
    return cleaned


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None
