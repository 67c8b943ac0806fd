"""The SSRF rule: partner upstreams and webhook receivers must not resolve to private, loopback
or link-local addresses, unless MARKETPLACE_ALLOW_PRIVATE_NETWORKS=1 (tests, local development).
Checked when a URL is saved, and again before connecting (DNS can change: rebinding)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from marketplace.settings import get_settings


class UnsafeURL(ValueError):
    pass


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url_shape(url: str, *, schemes: tuple[str, ...] = ("http", "https")) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise UnsafeURL(f"must be an absolute {' or '.join(schemes)} URL")
    if parts.username or parts.password:
        raise UnsafeURL("must not contain credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeURL("has an invalid port") from exc
    return parts.hostname, port


async def resolve_public(url: str, *, schemes: tuple[str, ...] = ("http", "https")) -> None:
    """Raise UnsafeURL unless every address the host resolves to is public (or private is allowed)."""
    host, port = check_url_shape(url, schemes=schemes)
    await public_addresses(host, port)


async def public_addresses(host: str, port: int) -> list[str]:
    """The addresses to connect to for host:port, all checked by the rule; connect to one of these
    (not to the name again), so DNS cannot change its answer between the check and the connect.
    With private networks allowed: [host] unresolved."""
    if get_settings().allow_private_networks:
        return [host]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeURL(f"host {host!r} does not resolve") from exc
    except UnicodeError as exc:  # an empty or over-long label: the IDNA codec refuses the name
        raise UnsafeURL(f"host {host!r} is not a valid DNS name") from exc
    for info in infos:
        if not _is_public(str(info[4][0])):
            raise UnsafeURL(
                f"resolves to a private, loopback or link-local address ({info[4][0]}); "
                "use a public host (or set MARKETPLACE_ALLOW_PRIVATE_NETWORKS=1 in development)"
            )
    return [str(info[4][0]) for info in infos]
