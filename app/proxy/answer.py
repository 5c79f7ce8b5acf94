"""A proxied call's answer, handed to the WSGI server as it is: a status line, a list of headers
and the body, with none of the header objects a framework response builds per call."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from werkzeug.http import HTTP_STATUS_CODES

STATUS_LINES = {code: f"{code} {reason}" for code, reason in HTTP_STATUS_CODES.items()}


class Answer:
    """JSON (bytes, with its length) or a stream (an iterator, sent chunked as it comes). The
    server closes the iterator when it is done or the client is gone, which is how a stream's
    relay learns of a hang-up."""

    __slots__ = ("body", "headers", "status_code")

    def __init__(
        self, status: int, content_type: str, headers: dict[str, str], body: bytes | Iterator[bytes]
    ):
        self.status_code = status
        self.headers = [("Content-Type", content_type), *headers.items()]
        if isinstance(body, bytes):
            self.headers.append(("Content-Length", str(len(body))))
        self.body = body

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(STATUS_LINES.get(self.status_code) or f"{self.status_code} UNKNOWN", self.headers)
        return [self.body] if isinstance(self.body, bytes) else self.body
