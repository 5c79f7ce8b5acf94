"""Where webhooks may be sent (SPEC 7.2): `http` or `https`, never a link-local address.

A link-local target would point the deliveries, sent from inside the operator's network, at the
cloud's instance metadata service (169.254.169.254 and its IPv6 twins). `check` runs when a
subscription is created and again when a delivery connects, since a name may resolve elsewhere by
then. Loopback and private addresses are allowed: on-premise targets use them.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
SCHEMES = ("http", "https")
# The AWS Nitro instance metadata service over IPv6; not link-local by its prefix.
METADATA_V6 = ipaddress.IPv6Address("fd00:ec2::254")


class TargetRefused(ValueError):
    """The URL may not receive webhooks; the message says why."""


def check(url: str) -> None:
    """Refuse `url` as a webhook target unless it is http(s) with a host, none of whose addresses
    is link-local. A name that does not resolve passes: it is checked again when connecting."""
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # .port raises ValueError for a port that is not one
    except ValueError as exc:
        raise TargetRefused(f"must be an http or https URL: {exc}") from exc
    if parts.scheme not in SCHEMES or not host:
        raise TargetRefused("must be an http or https URL with a host")
    for address in _addresses(host):
        if _link_local(address):
            spelled = "" if str(address) == host else f" ({host} is {address})"
            raise TargetRefused(f"must not be a link-local address{spelled}")


def checked_addresses(host: str) -> list[Address]:
    """Where a delivery may connect for `host`: its addresses, none link-local (checked again at
    connection time, since a name may resolve elsewhere than when it was subscribed)."""
    found = _addresses(host)
    if not found:
        raise TargetRefused(f"{host!r} does not resolve")
    for address in found:
        if _link_local(address):
            raise TargetRefused(f"must not be a link-local address ({host} is {address})")
    return found


def _addresses(host: str) -> list[Address]:
    """The addresses `host` spells or resolves to (numeric spellings such as `2852039166` too)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except ValueError as exc:  # UnicodeError (not IDNA) or an embedded NUL
        raise TargetRefused(f"{host!r} is not a valid host name") from exc
    except OSError:
        return []
    return [ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]) for *_, sockaddr in found]


def _link_local(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address == METADATA_V6:
            return True
        return (address.ipv4_mapped or address).is_link_local
    return address.is_link_local
