"""Real local servers for connector tests: an HTTP server that records requests and answers with what the
test scripts (status, body, delay), and an SMTP server (aiosmtpd) that requires STARTTLS, with a
self-signed certificate made by openssl."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    delay: float = 0.0


Responder = Callable[[Seen], Reply]


class RecordingServer:
    """ThreadingHTTPServer on 127.0.0.1; `responder(seen) -> Reply` decides each answer."""

    def __init__(self, responder: Responder | None = None):
        self.requests: list[Seen] = []
        self.responder: Responder = responder or (lambda s: Reply())
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real services do

            def setup(self) -> None:
                super().setup()
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay

            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                u = urlsplit(self.path)
                seen = Seen(self.command, u.path, parse_qs(u.query), {k.lower(): v for k, v in self.headers.items()},
                            self.rfile.read(n) if n else b"", time.time())
                with server._lock:
                    server.requests.append(seen)
                reply = server.responder(seen)
                if reply.delay:
                    time.sleep(reply.delay)
                data = reply.body if isinstance(reply.body, bytes | str) else json.dumps(reply.body)
                data = data.encode() if isinstance(data, str) else data
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PATCH = do_PUT = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def wait(self, n: int, timeout: float = 10.0) -> list[Seen]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self._lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.01)
        return list(self.requests)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """(cert, key) for CN=localhost / IP 127.0.0.1, made with openssl."""
    if not shutil.which("openssl"):
        import pytest

        pytest.skip("openssl is needed to make a certificate for the STARTTLS test")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


class SmtpServer:
    """aiosmtpd on 127.0.0.1 that only accepts mail after STARTTLS (and AUTH when credentials are set)."""

    def __init__(self, directory: Path, username: str | None = None, password: str | None = None,
                 reject: int | None = None):
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        cert, key = self_signed_cert(directory)
        self.cert = cert
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        self.messages: list[dict[str, Any]] = []
        self.tls_seen: list[bool] = []
        outer = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                if reject:
                    return f"{reject} mailbox unavailable"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                outer.tls_seen.append(session.ssl is not None)
                outer.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                       "data": envelope.content.decode("utf-8", "replace"),
                                       "tls": session.ssl is not None})
                return "250 Message accepted"

        def auth(server, session, envelope, mechanism, data):
            ok = isinstance(data, LoginPassword) and data.login.decode() == username \
                and data.password.decode() == password
            return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

        kw: dict[str, Any] = {"tls_context": ctx, "require_starttls": True}
        if username:
            kw.update(authenticator=auth, auth_require_tls=True, auth_required=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kw)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()
