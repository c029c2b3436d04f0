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
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from pipeline.console import auth
from pipeline.console.actions import Actions, ConsoleError, Context
from pipeline.console.live import ChangeFeed
from pipeline.soar.tickets import TicketStore

log = logging.getLogger("mdr.console")
HERE = Path(__file__).resolve().parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
LOGIN_COOKIE = "mdr_login"


@dataclass(slots=True)
class ConsoleConfig:
    db_url: str | None = None
    usecases: str | None = None
    playbooks: str | None = None
    channels: str | None = None
    verdicts_file: Path | None = None
    kafka: str | None = None  # bootstrap servers, for consumer lag
    group: str = "mdr-worker"
    metrics_urls: list[str] = field(default_factory=list)
    secure_cookies: bool = False  # force Secure cookies even when the request looks like plain HTTP
    feed_interval: float = 0.5
    run_playbooks: bool = True  # approvals resume runs in this process (as `mdr tickets approve`)


class LoginRequired(Exception):
    pass


class CsrfFailed(Exception):
    pass


@dataclass(slots=True)
class Auth:
    who: auth.Principal
    session: auth.Session | None  # None: authenticated by API token

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session else ""


class Console:
    """Everything a request needs: store, actions, change feed, templates, loaded use cases and playbooks."""

    def __init__(self, cfg: ConsoleConfig, store: TicketStore | None = None):
        self.cfg = cfg
        self.store = store or TicketStore(cfg.db_url)
        self._own_store = store is None
        self._soar: Any = None
        self.channels = self._load_channels()
        self.playbooks = self._load_playbooks()
        self.actions = Actions(Context(self.store, cfg.verdicts_file, self.runner if cfg.run_playbooks else None))
        self.feed = ChangeFeed(self.store, cfg.feed_interval)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(
            enabled_extensions=("html", "j2"), default_for_string=True, default=True), trim_blocks=True,
            lstrip_blocks=True)
        from pipeline.console import views

        views.install_filters(self.env)

    def _load_playbooks(self) -> Any:
        from pipeline.soar.playbooks import load_playbooks

        chans = self.channels
        try:
            return load_playbooks(self.cfg.playbooks, channels=chans.names() if chans.specs or chans.tenants else None)
        except Exception as e:  # the pages then list runs without their step names
            log.warning("playbooks not loaded: %s", e)
            return None

    def _load_channels(self) -> Any:
        """The channel configuration (loading it registers its secrets: they are masked on every page);
        approved playbook steps run with it."""
        from pipeline.soar.connectors import Channels, load_channels

        try:
            return load_channels(self.cfg.channels)
        except Exception as e:
            log.warning("channels not loaded (approved steps will find them unavailable): %s", e)
            return Channels()

    def runner(self) -> Any:
        """The playbook runner of this process (created on the first approval, as `mdr tickets approve`)."""
        if self._soar is None:
            from pipeline.soar.actions import Soar
            from pipeline.soar.playbooks import PlaybookSet

            self._soar = Soar(self.store, self.playbooks or PlaybookSet(), self.channels, workers=2)
        return self._soar.runner

    def render(self, request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> HTMLResponse:
        a: Auth | None = getattr(request.state, "auth", None)
        body = self.env.get_template(name).render(
            request=request, who=a.who if a else None, csrf=a.csrf if a else "",
            flash=a.session.flash if a and a.session else None, now=datetime.now(UTC), **ctx)
        return HTMLResponse(body, status_code=status)

    def close(self) -> None:
        self.feed.close()
        if self._soar is not None:
            self._soar.runner.close()
        self.channels.close()
        if self._own_store:
            self.store.close()


# ---- request plumbing ------------------------------------------------------------------------------------------
def secure(request: Request, cfg: ConsoleConfig) -> bool:
    return cfg.secure_cookies or request.url.scheme == "https"


def session_cookie(request: Request, cfg: ConsoleConfig) -> str:
    return "__Host-mdr_session" if secure(request, cfg) else "mdr_session"


def client_of(request: Request) -> str:
    return request.client.host if request.client else "-"


def authenticate(request: Request) -> Auth | None:
    c: Console = request.app.state.console
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        who = auth.from_token(c.store, token.strip())
        return Auth(who, None) if who else None
    sid = request.cookies.get(session_cookie(request, c.cfg))
    sess = auth.session(c.store, sid) if sid else None
    return Auth(sess.who, sess) if sess else None


def require(request: Request) -> Auth:
    a = authenticate(request)
    if a is None:
        raise LoginRequired()
    request.state.auth = a
    return a


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    o = urlsplit(origin)
    return (o.scheme, o.netloc) == (request.url.scheme, request.url.netloc)


def check_csrf(request: Request, a: Auth, token: str | None) -> None:
    """Writes made with a session need its CSRF token and, when the browser names one, this origin."""
    if a.session is None:  # bearer token: not sent by browsers on their own
        return
    if not same_origin(request) or not auth.csrf_ok(a.session, token):
        raise CsrfFailed()


def safe_next(target: str | None) -> str:
    """Only local paths: no scheme, no host, no protocol-relative or backslash tricks."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or "\n" in target:
        return "/queue"
    return target[:500]


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
    from pipeline.console import api, pages

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


def new_login_token() -> str:
    return secrets.token_urlsafe(24)
