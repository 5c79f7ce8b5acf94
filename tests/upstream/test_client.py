"""The pooled upstream client (app/upstream/client.py) against servers on loopback that answer
byte for byte as scripted: framing, pooling, failures, and TLS."""

from __future__ import annotations

import datetime
import ipaddress
import os
import resource
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.upstream.client import Client, UpstreamFailure

Script = Callable[[socket.socket, bytes], None]  # the connection and the request it read
JSON_OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"ok": true}'


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return data
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


class Scripted:
    """A loopback server answering each request with the next script; counts its connections."""

    def __init__(self, scripts: list[Script], tls: ssl.SSLContext | None = None) -> None:
        self.scripts = scripts
        self.connections = 0
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.tls = tls
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            while self.scripts:
                request = read_request(conn)
                if not request:
                    return
                self.requests.append(request)
                self.scripts.pop(0)(conn, request)
        except OSError:
            pass
        finally:
            conn.close()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/v1/chat/completions"


@pytest.fixture
def serve() -> Iterator[Callable[..., Scripted]]:
    made: list[Scripted] = []

    def start(*scripts: Script, tls: ssl.SSLContext | None = None) -> Scripted:
        made.append(Scripted(list(scripts), tls))
        return made[-1]

    yield start
    for server in made:
        server.listener.close()


def answer(raw: bytes) -> Script:
    return lambda conn, _request: conn.sendall(raw)


def answer_then_close(raw: bytes, closed: threading.Event | None = None) -> Script:
    def script(conn: socket.socket, _request: bytes) -> None:
        conn.sendall(raw)
        conn.shutdown(socket.SHUT_RDWR)
        if closed is not None:
            closed.set()

    return script


def post(client: Client, url: str, stream: bool = False, timeout: float = 5.0):
    return client.post(url, {"Authorization": "Bearer k"}, {"model": "m", "n": 2**70}, timeout, stream, "up")


def test_request_head_body_and_keep_alive(serve):
    server = serve(answer(JSON_OK), answer(JSON_OK))
    client = Client()
    first, second = post(client, server.url()), post(client, server.url())
    assert (first.status, first.content_type, first.body) == (200, "application/json", b'{"ok": true}')
    assert second.body == b'{"ok": true}'
    assert server.connections == 1  # the second call reused the connection
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in head.split(b"\r\n")
    assert b"Authorization: Bearer k" in head.split(b"\r\n")
    assert body == b'{"model":"m","n":1180591620717411303424}'  # past 64 bits: json's encoder


def test_a_body_that_ends_with_its_connection(serve):
    server = serve(
        answer_then_close(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"), answer(JSON_OK)
    )
    client = Client()
    reply = post(client, server.url())
    assert (reply.status, reply.content_type, reply.body) == (200, "text/plain", b"all of it")
    assert post(client, server.url()).body == b'{"ok": true}'
    assert server.connections == 2  # the closed one was not reused


def test_a_reply_cut_short_is_a_failure(serve):
    server = serve(answer_then_close(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial'))
    with pytest.raises(UpstreamFailure, match="before the end of its reply") as failed:
        post(Client(), server.url())
    assert failed.value.reached and not failed.value.timeout


def test_an_idle_connection_the_upstream_closed_is_not_used(serve):
    closed = threading.Event()
    keep_alive = JSON_OK.replace(b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n", 1)
    server = serve(answer_then_close(keep_alive, closed), answer(JSON_OK))
    client = Client()
    post(client, server.url())
    assert closed.wait(5)
    # The server said keep-alive and then closed: the pooled connection is found closed and
    # replaced before the next request goes out, so that request is not lost.
    assert post(client, server.url()).body == b'{"ok": true}'
    assert server.connections == 2


def test_a_stream_arrives_as_sent(serve):
    sent = threading.Event()

    def stream(conn: socket.socket, _request: bytes) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        conn.sendall(b"9\r\ndata: one\r\n")
        sent.wait(5)  # the client has read the first event before the second is sent
        conn.sendall(b"9\r\ndata: two\r\n0\r\n\r\n")

    server = serve(stream, answer(JSON_OK))
    client = Client()
    reply = post(client, server.url(), stream=True)
    chunks = reply.chunks()
    assert next(chunks) == b"data: one"
    sent.set()
    assert list(chunks) == [b"data: two"]
    reply.close(finished=True)
    assert post(client, server.url()).status == 200 and server.connections == 1


def test_timeouts_and_refusals(serve):
    server = serve(lambda conn, _request: threading.Event().wait(3))
    with pytest.raises(UpstreamFailure, match="timed out") as slow:
        post(Client(), server.url(), timeout=0.3)
    assert slow.value.timeout and slow.value.reached
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(UpstreamFailure, match="cannot connect") as refused:
        post(Client(), f"http://127.0.0.1:{port}/v1")
    assert not refused.value.reached


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def test_tls_verifies_the_upstream(serve, tmp_path: Path):
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = serve(answer(JSON_OK), answer(JSON_OK), tls=context)
    with pytest.raises(UpstreamFailure, match="over TLS") as untrusted:
        post(Client(), server.url("https"))
    assert not untrusted.value.reached
    # Trusted (the system's CA file replaced by this certificate), the same calls go through, the
    # second on the first one's connection.
    code = (
        "from app.upstream.client import Client\n"
        "c = Client()\n"
        "for _ in range(2):\n"
        f"    r = c.post({server.url('https')!r}, {{}}, {{}}, 5, False, 'up')\n"
        "    print(r.status, r.body.decode())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"SSL_CERT_FILE": str(cert), "PATH": "/usr/bin"},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.split("\n")[:2] == ['200 {"ok": true}'] * 2, done.stderr
    assert server.connections == 2  # the untrusted one, then one for both trusted calls


def test_interim_replies_are_skipped(serve):
    def early_hints(conn: socket.socket, _request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        conn.sendall(JSON_OK)

    server = serve(early_hints, answer(JSON_OK))
    client = Client()
    reply = post(client, server.url())
    assert (reply.status, reply.body) == (200, b'{"ok": true}')
    assert post(client, server.url()).status == 200 and server.connections == 1


def test_bytes_after_a_whole_reply_do_not_fail_it(serve):
    server = serve(answer(JSON_OK + b"HTTP/1.1 garbage\r\n"), answer(JSON_OK))
    client = Client()
    assert post(client, server.url()).body == b'{"ok": true}'
    assert post(client, server.url()).body == b'{"ok": true}'
    assert server.connections == 2  # the connection out of step was not used again


def test_an_answer_before_the_whole_body_is_relayed(tmp_path: Path):
    """An upstream may refuse a large body after its head and close (a 413): the client relays
    that answer rather than taking the broken send for a failure of the deployment."""
    listener = socket.create_server(("127.0.0.1", 0))

    def refuse() -> None:
        conn, _ = listener.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 17\r\nConnection: close\r\n\r\n")
        conn.sendall(b'{"error":"large"}')
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536):  # a lingering close, as servers do: the answer is not reset away
            pass
        conn.close()

    threading.Thread(target=refuse, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/chat/completions"
    reply = Client().post(url, {}, {"messages": "x" * 8_000_000}, 5, False, "up")
    listener.close()
    assert (reply.status, reply.body) == (413, b'{"error":"large"}')


class ScriptedReads:
    """A socket whose reads return the given pieces, one per recv: replies split as a network
    may split them, deterministically."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)
        self.closed = False

    def recv(self, _size: int) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""

    def close(self) -> None:
        self.closed = True


def exchange_over(*pieces: bytes):
    from app.upstream.client import Target, _Exchange

    return _Exchange(Client(), Target("http://127.0.0.1:9/v1", {}), ScriptedReads(*pieces))  # type: ignore[arg-type]


def whole(exchange) -> tuple[int, str, bytes]:
    status = exchange.read_head()
    while not exchange.parsed.complete:
        exchange.read_more()
    return status, exchange.parsed.content_type, exchange.taken()


def test_interim_replies_split_from_the_final_one_leave_nothing_in_it():
    hints = b"HTTP/1.1 103 Early Hints\r\nContent-Type: text/html\r\nLink: </a.css>; rel=preload\r\n\r\n"
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert whole(exchange_over(hints, plain)) == (200, "application/json", b"ok")
    assert whole(exchange_over(hints + plain)) == (200, "application/json", b"ok")
    assert whole(exchange_over(b"HTTP/1.1 100 Continue\r\n\r\n", hints, JSON_OK)) == (
        200,
        "application/json",
        b'{"ok": true}',
    )


def test_a_second_reply_after_the_whole_one_spoils_the_connection_and_is_not_read():
    for after in (b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n", b"junk"):
        exchange = exchange_over(JSON_OK + after)
        assert whole(exchange) == (200, "application/json", b'{"ok": true}')
        assert not exchange.reusable()


def test_idle_connections_past_descriptor_1024_are_reused():
    """The idle check takes any descriptor (select would refuse those past 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    held = [os.dup(0) for _ in range(1100)]
    try:
        server = Scripted([answer(JSON_OK) for _ in range(3)])
        client = Client()
        for _ in range(3):
            assert post(client, server.url()).status == 200
        assert server.connections == 1
        server.listener.close()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
