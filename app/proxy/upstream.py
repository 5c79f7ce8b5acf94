"""Talking to upstreams: one pooled HTTP client per process, streaming passthrough, usage capture."""

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

from app.proxy import mock
from app.proxy.auth import DeploymentInfo

CONNECT_TIMEOUT_S = 5.0
READ_SIZE = 65536
AZURE_DEFAULT_API_VERSION = "2024-10-21"


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

    def prime(self, deployment_id: int) -> None:
        """Read the first bytes of a stream now, while failing over is still possible."""
        try:
            self._first = next(self.chunks(), b"")
        except ReadTimeoutError as exc:
            self.close(finished=False)
            raise UpstreamFailure(
                f"deployment {deployment_id} timed out before its first byte", timeout=True
            ) from exc
        except (ProtocolError, HTTPError, OSError) as exc:
            self.close(finished=False)
            raise UpstreamFailure(f"deployment {deployment_id} broke before its first byte: {exc}") from exc
        if not self._first:
            self.close(finished=False)
            raise UpstreamFailure(f"deployment {deployment_id} closed the stream before its first byte")

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

    def send(self, deployment: DeploymentInfo, endpoint: str, body: dict, stream: bool) -> Reply:
        if deployment.provider == "mock":
            return mock.answer(endpoint, body, stream)
        reply = self._post(deployment, endpoint, body, stream)
        if stream and reply.status == 200:
            reply.prime(deployment.id)
        return reply

    def _post(self, deployment: DeploymentInfo, endpoint: str, body: dict, stream: bool) -> Reply:
        url, headers = _address(deployment, endpoint)
        timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=float(deployment.timeout_s))
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
            raise UpstreamFailure(f"cannot connect to deployment {deployment.id}", reached=False) from exc
        except ConnectTimeoutError as exc:
            raise UpstreamFailure(
                f"deployment {deployment.id} did not accept a connection in time", timeout=True, reached=False
            ) from exc
        except ReadTimeoutError as exc:
            raise UpstreamFailure(f"deployment {deployment.id} timed out", timeout=True) from exc
        except (ProtocolError, HTTPError) as exc:
            raise UpstreamFailure(f"deployment {deployment.id} failed: {exc}") from exc
        content_type = raw.headers.get("content-type", "application/json")
        if stream and raw.status == 200:
            return Reply(raw.status, content_type, raw=raw)
        return Reply(raw.status, content_type, body=_read_all(raw, deployment))


def _read_all(raw: urllib3.BaseHTTPResponse, deployment: DeploymentInfo) -> bytes:
    try:
        data = raw.read()
    except ReadTimeoutError as exc:
        raw.close()
        raise UpstreamFailure(f"deployment {deployment.id} timed out", timeout=True) from exc
    except (ProtocolError, HTTPError) as exc:
        raw.close()
        raise UpstreamFailure(f"deployment {deployment.id} failed: {exc}") from exc
    raw.release_conn()
    return data


def _address(d: DeploymentInfo, endpoint: str) -> tuple[str, dict[str, str]]:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if d.provider == "azure":
        url = (
            f"{d.base_url}/openai/deployments/{d.upstream_model}/{endpoint}"
            f"?api-version={d.api_version or AZURE_DEFAULT_API_VERSION}"
        )
        if d.api_key:
            headers["api-key"] = d.api_key
        return url, headers
    if d.api_key:
        headers["authorization"] = f"Bearer {d.api_key}"
    return f"{d.base_url}/{endpoint}", headers
