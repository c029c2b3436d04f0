"""A real console server for the tests: uvicorn on a free 127.0.0.1 port in a thread, and small HTTP helpers
(log in through the real login form, read the CSRF token of a page)."""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from pipeline.console.web import ConsoleConfig, create_app

PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ConsoleServer:
    cfg: ConsoleConfig
    forwarded_allow_ips: str | None = None
    port: int = 0

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.app = create_app(self.cfg)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
                                proxy_headers=bool(self.forwarded_allow_ips),
                                forwarded_allow_ips=self.forwarded_allow_ips, server_header=False,
                                timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="console-test-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def console(self) -> Any:
        return self.app.state.console

    def __enter__(self) -> ConsoleServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("console server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30, **kw)


def login(client: httpx.Client, name: str, password: str = PASSWORD, headers: dict[str, str] | None = None
          ) -> httpx.Response:
    """Sign in through the login form (its double-submit token included); returns the POST's response."""
    page = client.get("/login", headers=headers)
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    origin = str(client.base_url).rstrip("/")
    extra = dict(headers or {})
    if extra.get("X-Forwarded-Proto") == "https":  # the browser is on the proxy's https origin, and sends the
        origin = origin.replace("http://", "https://", 1)  # Secure cookie that httpx keeps from plain http
        extra["Cookie"] = f"mdr_login={page.cookies['mdr_login']}"
    return client.post("/login", data={"name": name, "password": password, "login_token": token.group(1),
                                       "next": "/queue"}, headers={**extra, "Origin": origin})


def csrf_of(client: httpx.Client) -> str:
    """The session's CSRF token (as /api/me tells a signed-in browser)."""
    r = client.get("/api/me")
    assert r.status_code == 200, r.text
    return str(r.json()["csrf"])


def post_form(client: httpx.Client, path: str, data: dict[str, str], csrf: str | None = None) -> httpx.Response:
    body = {**data, "csrf": csrf if csrf is not None else csrf_of(client)}
    return client.post(path, data=body, headers={"Origin": str(client.base_url).rstrip("/")})


def csrf_in(html: str) -> str | None:
    m = re.search(r'name="csrf" value="([^"]*)"', html)
    return m.group(1) if m else None
