"""One pooled HTTP client per process: connect and read timeouts, streams passed through as raw bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

CONNECT_TIMEOUT_S = 5.0
READ_SIZE = 65536


class UpstreamFailure(Exception):
    """A failure before the first byte reached the client: the next deployment may be tried."""

    def __init__(self, message: str, *, timeout: bool = False, reached: bool = True):
        super().__init__(message)
        self.timeout = timeout
        self.reached = reached  # False when no connection was ever made


class Reply:
    """An upstream answer: status, headers, and either a body or a stream of SSE events."""

    def __init__(
        self,
        status: int,
        content_type: str,
        body: bytes | None = None,
        raw: urllib3.BaseHTTPResponse | None = None,
        chunks: Iterator[bytes] | None = None,
    ):
        self.status = status
        self.content_type = content_type
        self.body = body
        self._raw = raw
        self._chunks = chunks
        self._first = b""

    def prime(self, name: str) -> None:
        """Read the first bytes of a stream now, while failing over is still possible."""
        try:
            self._first = next(self.chunks(), b"")
        except ReadTimeoutError as exc:
            self.close(finished=False)
            raise UpstreamFailure(f"{name} timed out before its first byte", timeout=True) from exc
        except (ProtocolError, HTTPError, OSError) as exc:
            self.close(finished=False)
            raise UpstreamFailure(f"{name} broke before its first byte: {exc}") from exc
        if not self._first:
            self.close(finished=False)
            raise UpstreamFailure(f"{name} closed the stream before its first byte")

    def chunks(self) -> Iterator[bytes]:
        """Raw bytes as they arrive, with no buffering."""
        if self._first:
            first, self._first = self._first, b""
            yield first
        if self._chunks is not None:
            yield from self._chunks
            return
        assert self._raw is not None
        while True:
            data = self._raw.read1(READ_SIZE)
            if not data:
                return
            yield data

    def close(self, *, finished: bool) -> None:
        """Return the connection to the pool if the body was read to the end, else drop it."""
        if self._raw is None:
            return
        if finished:
            self._raw.release_conn()
        else:
            # Closing the socket is how the upstream learns the client went away.
            self._raw.close()


class Client:
    def __init__(self, maxsize: int = 512):
        # block=False: a burst beyond the pool opens extra connections rather than queueing.
        self.pool = urllib3.PoolManager(num_pools=64, maxsize=maxsize, block=False, retries=False)

    def post(
        self, url: str, headers: dict[str, str], body: dict, read_timeout_s: float, stream: bool, name: str
    ) -> Reply:
        """POST a JSON body; a 200 stream is primed (its first bytes read) so that a failure before
        them is still an UpstreamFailure. `name` says whom the failures are about."""
        reply = self._post(url, headers, body, read_timeout_s, stream, name)
        if stream and reply.status == 200:
            reply.prime(name)
        return reply

    def _post(
        self, url: str, headers: dict[str, str], body: dict, read_timeout_s: float, stream: bool, name: str
    ) -> Reply:
        timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=read_timeout_s)
        try:
            raw = self.pool.urlopen(
                "POST",
                url,
                body=json.dumps(body).encode(),
                headers=headers,
                timeout=timeout,
                preload_content=False,
                redirect=False,
            )
        except NewConnectionError as exc:
            raise UpstreamFailure(f"cannot connect to {name}", reached=False) from exc
        except ConnectTimeoutError as exc:
            raise UpstreamFailure(
                f"{name} did not accept a connection in time", timeout=True, reached=False
            ) from exc
        except ReadTimeoutError as exc:
            raise UpstreamFailure(f"{name} timed out", timeout=True) from exc
        except (ProtocolError, HTTPError) as exc:
            raise UpstreamFailure(f"{name} failed: {exc}") from exc
        content_type = raw.headers.get("content-type", "application/json")
        if stream and raw.status == 200:
            return Reply(raw.status, content_type, raw=raw)
        return Reply(raw.status, content_type, body=_read_all(raw, name))


def _read_all(raw: urllib3.BaseHTTPResponse, name: str) -> bytes:
    try:
        data = raw.read()
    except ReadTimeoutError as exc:
        raw.close()
        raise UpstreamFailure(f"{name} timed out", timeout=True) from exc
    except (ProtocolError, HTTPError) as exc:
        raw.close()
        raise UpstreamFailure(f"{name} failed: {exc}") from exc
    raw.release_conn()
    return data
