"""The sites allowed to frame the customer usage page (project setting `portal_frame_origins`),
and the headers that say so to browsers."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from app.errors import Invalid

FIELD = "portal_frame_origins"
MOST = 50
# A DNS name of letters, digits and inner hyphens: what CSP's host-source can name, and no more.
LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def check(value: object) -> list[str]:
    """The origins as browsers spell them (lower case, no trailing slash), duplicates dropped.

    Each is `http(s)://host[:port]`; `https://*.example.com` allows every subdomain of a name of
    at least two labels. Anything else (a path, a query, credentials, a bare `*`) is refused,
    naming the setting: these go verbatim into a Content-Security-Policy header.
    """
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MOST:
        raise Invalid(f"{FIELD} must be a list of at most {MOST} origins", FIELD)
    found: list[str] = []
    for item in value:
        origin = _origin(item)
        if origin not in found:
            found.append(origin)
    return found


def _origin(item: object) -> str:
    text = item.strip() if isinstance(item, str) else ""
    if not text.isascii() or len(text) > 300:
        raise _refused(item)
    try:
        parts = urlsplit(text.removesuffix("/"))
        port = parts.port
    except ValueError:
        raise _refused(item) from None
    if parts.scheme not in ("http", "https") or parts.path or parts.query or parts.fragment:
        raise _refused(item)
    if port == 0:
        raise _refused(item)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _refused(item)
    host = _host(parts.hostname or "", item)
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _host(host: str, item: object) -> str:
    if ":" in host:  # an IPv6 literal
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise _refused(item) from None
    labels = host.split(".")
    wildcard = labels[0] == "*"
    named = labels[1:] if wildcard else labels
    if wildcard and len(named) < 2:  # *.com would let any site frame the page
        raise _refused(item)
    if not named or not all(LABEL.fullmatch(label) for label in named) or len(host) > 253:
        raise _refused(item)
    return host


def _refused(item: object) -> Invalid:
    return Invalid(
        f"{FIELD}: {item!r} is not an origin like https://app.example.com (scheme and host, "
        "an optional port, no path; https://*.example.com for every subdomain)",
        FIELD,
    )


def policy(origins: list[str]) -> str:
    """The usage page's Content-Security-Policy: its own stylesheet, no script, no form, framed
    only by the listed origins (none listed: by no one)."""
    ancestors = " ".join(origins) or "'none'"
    return (
        "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
        f"form-action 'none'; frame-ancestors {ancestors}"
    )
