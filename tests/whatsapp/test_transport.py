"""The connections message requests go out on: kept alive, replaced when the server closed them, through proxies."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from zoho_whatsapp.whatsapp.transport import KeptAliveConnections

ANSWER = b'{"messaging_product":"whatsapp","messages":[{"id":"wamid.A"}]}'


class Recorder(ThreadingHTTPServer):
    """A Cloud API (or plain HTTP proxy) stand-in that answers every POST and records what reached it."""

    daemon_threads = True

    def __init__(self, *, close_after_answer: bool = False, unanswered: int | None = None) -> None:
        self.seen: list[dict[str, Any]] = []
        self.connections = 0
        self.close_after_answer = close_after_answer
        self.unanswered = unanswered  # the request (counting from 1) whose connection breaks before the answer
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        self.connections += 1
        return super().get_request()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append({"line": self.requestline, "headers": dict(self.headers), "body": body})
        if len(self.server.seen) == self.server.unanswered:
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)
        # Closing without saying "Connection: close": the client finds out only when it next looks.
        self.close_connection = self.server.close_after_answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Recorder] = []

    def start(**kw: Any) -> Recorder:
        server = Recorder(**kw)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_thread_keeps_its_connection_and_the_base_path(serve) -> None:
    api = serve()
    connections = KeptAliveConnections(api.url + "/graph", timeout=5)
    answers = [connections.post("/v23.0/123/messages", b'{"n": %d}' % i, {"Authorization": "Bearer t"}) for i in range(3)]
    assert answers == [(200, ANSWER)] * 3
    assert api.connections == 1
    assert [s["line"] for s in api.seen] == ["POST /graph/v23.0/123/messages HTTP/1.1"] * 3
    assert [s["body"] for s in api.seen] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    connections.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_before_sending(serve) -> None:
    """Sending on it would fail after the request may have left (an unknown outcome): it is never used."""
    api = serve(close_after_answer=True)
    connections = KeptAliveConnections(api.url, timeout=5)
    for _ in range(3):
        assert connections.post("/m", b"{}", {}) == (200, ANSWER)
        time.sleep(0.05)  # the server's close reaches this side
    assert api.connections == 3 and len(api.seen) == 3


def test_a_connection_that_broke_under_a_request_is_not_used_again(serve) -> None:
    api = serve(unanswered=2)
    connections = KeptAliveConnections(api.url, timeout=5)
    assert connections.post("/m", b"{}", {})[0] == 200
    with pytest.raises(http.client.RemoteDisconnected):  # the hook records it as an unknown outcome
        connections.post("/m", b"{}", {})
    assert connections.post("/m", b"{}", {})[0] == 200
    assert api.connections == 2 and len(api.seen) == 3


def test_through_a_plain_http_proxy_the_request_names_the_whole_url(serve) -> None:
    proxy = serve()
    connections = KeptAliveConnections("http://127.0.0.1:9999/base", timeout=5,
                                       proxy=proxy.url.replace("http://", "http://ops:s%40cret@"))
    assert connections.post("/v23.0/123/messages", b"{}", {"Authorization": "Bearer t"}) == (200, ANSWER)
    (seen,) = proxy.seen
    assert seen["line"] == "POST http://127.0.0.1:9999/base/v23.0/123/messages HTTP/1.1"
    assert seen["headers"]["Proxy-Authorization"] == "Basic b3BzOnNAY3JldA=="  # ops:s@cret


def test_through_a_proxy_https_is_tunnelled_and_nothing_leaves_in_the_clear() -> None:
    """The proxy sees a CONNECT to Meta's host and then TLS: never the token or the message."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def proxy() -> None:
        conn, _ = listener.accept()
        with conn:
            received.append(conn.recv(65536))
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            received.append(conn.recv(65536))  # the TLS client hello, then the handshake fails

    thread = threading.Thread(target=proxy, daemon=True)
    thread.start()
    connections = KeptAliveConnections("https://graph.facebook.com", timeout=5,
                                       proxy=f"http://ops:pw@127.0.0.1:{listener.getsockname()[1]}")
    with pytest.raises(OSError):
        connections.post("/v23.0/123/messages", b'{"to": "+919820012345"}', {"Authorization": "Bearer EAAsecret"})
    thread.join(5)
    listener.close()
    connect = received[0].decode()
    assert connect.startswith("CONNECT graph.facebook.com:443 HTTP/1.")
    assert "Proxy-Authorization: Basic b3BzOnB3" in connect
    assert b"EAAsecret" not in b"".join(received) and b"9820012345" not in b"".join(received)
    assert received[1][:1] == b"\x16"  # a TLS handshake record
