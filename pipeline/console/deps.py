"""What every console request needs: the `Console` (store, actions, change feed, templates, use cases and
playbooks), its configuration, and the request checks (authentication, CSRF, same origin, safe redirects) that
the pages and the API depend on. `web.create_app` puts them together."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from pipeline.console import auth
from pipeline.console.actions import Actions, Context
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


def new_login_token() -> str:
    return secrets.token_urlsafe(24)
