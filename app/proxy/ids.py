"""Ids unique across processes and nodes, made without a system call each (uuid4 and secrets read
the kernel's random source every time): 64 random bits drawn once per process, again in a forked
child, then a counter."""

from __future__ import annotations

import itertools
import os
import secrets

_tag = secrets.token_hex(8)
_counter = itertools.count(1)


def _renew() -> None:
    global _tag, _counter
    _tag, _counter = secrets.token_hex(8), itertools.count(1)


os.register_at_fork(after_in_child=_renew)


def unique(prefix: str = "") -> str:
    return f"{prefix}{_tag}{next(_counter):08x}"
