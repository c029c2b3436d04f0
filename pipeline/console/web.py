"""The console application: FastAPI (Starlette) serving server-rendered Jinja2 pages and the JSON API from one
process, over the SOAR store.

Security, in one place:
- authentication: a session cookie (pages and API) or `Authorization: Bearer <token>` (API); everything but
  /login, /healthz and the static files (CSS and one JS file, no data) needs one;
- the session cookie is HttpOnly, SameSite=Strict, Secure (and `__Host-` prefixed) when the request came over
  TLS (directly, or from a proxy trusted with `--forwarded-allow-ips`);
- CSRF: every form carries the session's synchronizer token (the login form a double-submit token); API
  writes made with the session cookie carry it in `X-CSRF-Token`; cross-origin writes are refused;
- headers: a strict Content-Security-Policy (scripts and styles from this origin only, no inline script,
  no framing), nosniff, no referrer to other origins, no caching of authenticated pages, HSTS over TLS;
- every page escapes (Jinja2 autoescape); records' text is never marked safe.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from pipeline.console import api, pages
from pipeline.console.actions import ConsoleError
from pipeline.console.deps import CSP, HERE, Console, ConsoleConfig, CsrfFailed, LoginRequired
from pipeline.soar.tickets import TicketStore

__all__ = ["ConsoleConfig", "create_app"]

class Headers:
    """ASGI middleware: security headers and the Server-Timing of every response."""

    def __init__(self, app: Any, cfg: ConsoleConfig):
        self.app = app
        self.cfg = cfg

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        https = self.cfg.secure_cookies or scope.get("scheme") == "https"
        path = scope.get("path", "")

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                own = message.get("headers", [])
                h = [(k, v) for k, v in own if k.lower() not in _OWN]
                csp = next((v for k, v in own if k.lower() == b"content-security-policy"), CSP.encode())  # stricter
                h += [(b"content-security-policy", csp), (b"x-content-type-options", b"nosniff"),
                      (b"x-frame-options", b"DENY"), (b"referrer-policy", b"same-origin"),
                      (b"cross-origin-opener-policy", b"same-origin"),
                      (b"cross-origin-resource-policy", b"same-origin"),
                      (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
                      (b"server-timing", f"app;dur={(time.perf_counter() - t0) * 1000:.2f}".encode())]
                if not path.startswith("/static/"):
                    h.append((b"cache-control", b"no-store"))
                if https:
                    h.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
                message = {**message, "headers": h}
            await send(message)

        await self.app(scope, receive, wrapped)


_OWN = {b"content-security-policy", b"x-content-type-options", b"x-frame-options", b"referrer-policy",
        b"cache-control", b"server-timing", b"strict-transport-security", b"server"}


def create_app(cfg: ConsoleConfig, store: TicketStore | None = None) -> FastAPI:
    console = Console(cfg, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        console.close()

    app = FastAPI(lifespan=lifespan, title="MDR analyst console API", version="1", docs_url=None, redoc_url=None,
                  openapi_url=None,
                  description="The JSON API of the analyst console. Authenticate with `Authorization: Bearer "
                              "<token>` (`mdr users token NAME`) or the console's session cookie (then writes "
                              "need the `X-CSRF-Token` header). Another tenant's incident, ticket or alert "
                              "answers 404.")
    app.state.console = console
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        if request.url.path.startswith("/api/") or request.url.path == "/events":
            return JSONResponse({"detail": "authentication required"}, 401, {"WWW-Authenticate": "Bearer"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        resp = RedirectResponse("/login", 303)
        if request.method == "GET" and target != "/":
            resp = RedirectResponse(f"/login?next={_quote(target)}", 303)
        return resp

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, exc: CsrfFailed) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "CSRF token missing or wrong"}, 403)
        return console.render(request, "error.html", {"code": 403, "message": "The form was stale or not sent by "
                                                      "this console. Reload the page and try again."}, 403)

    @app.exception_handler(ConsoleError)
    async def _console_error(request: Request, exc: ConsoleError) -> Response:
        message = "Not found." if exc.status == 404 else exc.message  # the same for absent and not yours
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": message}, exc.status)
        return console.render(request, "error.html", {"code": exc.status, "message": message}, exc.status)

    @app.exception_handler(404)
    async def _not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "not found"}, 404)
        if getattr(request.state, "auth", None) is None:
            return PlainTextResponse("not found", 404)
        return console.render(request, "error.html", {"code": 404, "message": "Not found."}, 404)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        try:
            with console.store.tx() as s:
                s.connection().exec_driver_sql("SELECT 1")
        except Exception:
            return PlainTextResponse("store unreachable\n", 503)
        return PlainTextResponse("ok\n")

    app.add_middleware(Headers, cfg=cfg)
    return app


def _quote(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="/")

