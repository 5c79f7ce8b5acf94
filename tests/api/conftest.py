"""The API's tests resolve no name on the internet: webhook targets are resolved when a hook is
created (SPEC 7.2), so names resolve here from a table, and numeric hosts as the system spells them."""

from __future__ import annotations

import socket

import pytest

# What an on-line resolver would answer for the names the tests use; other names do not resolve.
NAMES = {
    "example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "metadata.test": ["203.0.113.7", "169.254.169.254"],
    "metadata6.test": ["fd00:ec2::254"],
}


@pytest.fixture(autouse=True)
def offline_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    system = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name in NAMES:
            return [_entry(address, port) for address in NAMES[name]]
        try:  # numeric spellings only (127.0.0.1, 2852039166, ::1): no lookup leaves the machine
            return system(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except socket.gaierror:
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: not resolved in tests") from None

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _entry(address: str, port) -> tuple:
    number = int(port or 0)
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, number, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, number))
