"""Where webhooks may be delivered: public addresses only, unless an internal target is allowed.

A webhook URL is a request the service makes on an admin's behalf, so by default it may not
reach the service's own network: loopback, private (RFC 1918, IPv6 ULA), shared (CGNAT),
link-local, multicast, unspecified, reserved and other non-global addresses, and cloud metadata
services are refused. An IPv4 address inside an IPv6 one (IPv4-mapped, 6to4, NAT64) is judged
as that IPv4 address, and a host name by every address it resolves to. Targets are checked when
a webhook is registered and again before each delivery, which then connects to the very
address that was checked (so a name cannot resolve to a public address for the check and to
an internal one for the connection). `PATROLI_WEBHOOK_ALLOW` names internal receivers that
are allowed: host names, addresses or CIDR networks.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import httpx

from service.config import Address, Allow, parse_allow

__all__ = ["Allow", "Target", "TargetRefused", "parse_allow", "targets"]
from service.errors import InvalidInput

# Instance metadata services; most are link-local or private anyway, Azure's is public.
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "168.63.129.16", "100.100.100.200")
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598, carrier-grade NAT
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052, IPv4 embedded in the low 32 bits


class TargetRefused(InvalidInput):
    """A webhook URL points at an address the policy refuses (422 at registration)."""

    def __init__(self, message: str, short: str) -> None:
        super().__init__(message)
        self.short = short  # what a failed delivery attempt records


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_class(address: Address) -> str | None:
    """Why an address is no public webhook target (e.g. "loopback"), or None when it is."""
    if address in METADATA:
        return "cloud metadata"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.version == 4 and address in _SHARED:
        return "shared (CGNAT)"
    if address.is_private:
        return "private"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not globally routable"
    return None


def refusal(address: Address, allow: Allow) -> str | None:
    """Why the policy refuses to connect to an address, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            why = refusal(inner, allow)
            return f"{why} (IPv4 {inner} inside IPv6)" if why else None
    if allow.permits(address):
        return None
    kind = address_class(address)
    if kind is None:
        return None
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} address"


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[Address]:
    """The addresses a host name resolves to, in the resolver's order (no duplicates)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(
            f"webhook host {host!r} does not resolve ({exc.__class__.__name__})",
            "name resolution failed",
        ) from None
    out: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in out:
            out.append(address)
    return out


@dataclass(frozen=True)
class Target:
    """Where to send a webhook POST: the URL with its host replaced by a checked address."""

    url: httpx.URL  # the host is a checked IP address
    host_header: str  # the original host (and port): the Host header
    server_name: str | None  # the original host name for TLS (SNI and certificate check)


def targets(url: str, allow: Allow) -> list[Target]:
    """The checked addresses to deliver to, in order; TargetRefused when the policy says no.

    A name whose addresses are partly refused is refused as a whole.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise TargetRefused(f"webhook URL is not valid: {exc}", "invalid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise TargetRefused("webhook URL must be an absolute http(s) URL", "invalid URL")
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        addresses = resolve(host, port)
        if not addresses:
            raise TargetRefused(f"webhook host {host!r} has no address", "name resolution failed")
    named = literal is None and allow.permits_host(host)
    for address in () if named else addresses:
        why = refusal(address, allow)
        if why is not None:
            where = f"{address} is" if literal is not None else f"{host} resolves to {address},"
            raise TargetRefused(
                f"webhook URL refused: {where} {why}; internal receivers must be allowed "
                "with PATROLI_WEBHOOK_ALLOW",
                f"refused: {address} is {why}",
            )
    host_header = parsed.netloc.decode("ascii")
    server_name = host if parsed.scheme == "https" and literal is None else None
    return [Target(parsed.copy_with(host=str(a)), host_header, server_name) for a in addresses]
