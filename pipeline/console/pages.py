"""The console's HTML pages and forms. Each handler authenticates, reads through `queries` (tenant-scoped) or
writes through `actions` (tenant-scoped, role-checked, audited), and renders a template. Forms post back with
the session's CSRF token and redirect (303) to the page they came from."""

from __future__ import annotations

import asyncio
import hmac
import json
import tempfile
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from pipeline.console import audit, auth, health, queries
from pipeline.console.actions import ConsoleError, NotFound
from pipeline.console.deps import (
    LOGIN_COOKIE,
    Auth,
    Console,
    CsrfFailed,
    authenticate,
    check_csrf,
    client_of,
    new_login_token,
    require,
    safe_next,
    same_origin,
    secure,
    session_cookie,
)
from pipeline.schema import CATEGORIES, PRIORITIES
from pipeline.soar.models import STATUSES, VERDICTS, utcnow

router = APIRouter(include_in_schema=False)
HEARTBEAT = 15.0
Str = Annotated[str | None, Query(max_length=200)]


def _c(request: Request) -> Console:
    return request.app.state.console


def _done(request: Request, a: Auth, target: str, message: str) -> RedirectResponse:
    if a.session is not None:
        auth.set_flash(_c(request).store, a.session, message)
    return RedirectResponse(target, 303)


# ---- login / logout ------------------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request, next: Str = None) -> Response:
    c = _c(request)
    token = new_login_token()
    resp = c.render(request, "login.html", {"login_token": token, "next": safe_next(next), "error": None})
    resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=secure(request, c.cfg), path="/")
    return resp


@router.post("/login")
def login(request: Request, name: Annotated[str, Form(max_length=200)], password: Annotated[str, Form(max_length=1000)],
          login_token: Annotated[str, Form(max_length=100)] = "", next: Annotated[str, Form(max_length=500)] = "/queue",
          ) -> Response:
    c = _c(request)
    client = client_of(request)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not same_origin(request) or not cookie or not hmac.compare_digest(cookie.encode(), login_token.encode()):
        raise CsrfFailed()

    def again(status: int, error: str) -> Response:
        token = new_login_token()
        resp = c.render(request, "login.html", {"login_token": token, "next": safe_next(next), "error": error},
                        status)
        resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=secure(request, c.cfg),
                        path="/")
        return resp

    if auth.locked_out(c.store, name, client):
        audit.log(c.store, name, "login", "refused", client=client, detail={"why": "rate limit"})
        resp = again(429, "Too many failed logins. Wait a few minutes and try again.")
        resp.headers["Retry-After"] = str(int(auth.LOGIN_WINDOW.total_seconds()))
        return resp
    who = auth.verify_password(c.store, name, password)
    if who is None:
        auth.login_failed(c.store, name, client)
        audit.log(c.store, name, "login", "failed", client=client)
        return again(401, "Wrong name or password.")
    auth.login_succeeded(c.store, name)
    sid, _ = auth.open_session(c.store, who)
    audit.log(c.store, who, "login", "ok", client=client)
    resp = RedirectResponse(safe_next(next), 303)
    resp.set_cookie(session_cookie(request, c.cfg), sid, httponly=True, samesite="strict",
                    secure=secure(request, c.cfg), path="/")
    resp.delete_cookie(LOGIN_COOKIE, path="/")
    return resp


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    c = _c(request)
    a = require(request)
    check_csrf(request, a, csrf)
    name = session_cookie(request, c.cfg)
    auth.close_session(c.store, request.cookies.get(name, ""))
    audit.log(c.store, a.who, "logout", "ok", client=client_of(request))
    resp = RedirectResponse("/login", 303)
    resp.delete_cookie(name, path="/", secure=secure(request, c.cfg), httponly=True, samesite="strict")
    return resp


# ---- queue ---------------------------------------------------------------------------------------------------
@router.get("/")
def home(request: Request) -> Response:
    require(request)
    return RedirectResponse("/queue", 303)


QueueFilters = Annotated[queries.Filters, Depends(queries.Filters.of)]


@router.get("/queue")
def queue_page(request: Request, f: QueueFilters) -> Response:
    c = _c(request)
    a = require(request)
    with c.store.tx() as s:
        rows, total = queries.queue(s, a.who, f)
        tenants = queries.tenants(s, a.who)
        cats = queries.categories(s, a.who)
    return c.render(request, "queue.html", {
        "rows": rows, "total": total, "f": f, "tenants": tenants, "categories": cats or list(CATEGORIES),
        "priorities": PRIORITIES, "statuses": [queries.OPEN, *STATUSES, "all"], "page": "queue",
        "cap": queries.COUNT_CAP})


@router.get("/queue/rows")
def queue_rows(request: Request, f: QueueFilters) -> Response:
    """The queue's rows alone (the live page swaps them in on a change)."""
    c = _c(request)
    a = require(request)
    with c.store.tx() as s:
        rows, total = queries.queue(s, a.who, f)
    return c.render(request, "_rows.html", {"rows": rows, "total": total, "cap": queries.COUNT_CAP})


@router.get("/events")
async def events(request: Request) -> Response:
    """Server-sent events: `tickets` with the ids of changed tickets (of the asker's tenants only)."""
    c = _c(request)
    a = await asyncio.get_running_loop().run_in_executor(None, require, request)
    sub = c.feed.subscribe(a.who)

    async def stream() -> Any:
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    ids = await asyncio.wait_for(sub.queue.get(), HEARTBEAT)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    still = await asyncio.get_running_loop().run_in_executor(None, _still_signed_in, request)
                    if not still:
                        yield "event: signedout\ndata: {}\n\n"
                        return
                    yield ": ping\n\n"
                    continue
                yield f"event: tickets\ndata: {json.dumps({'ids': ids})}\n\n"
        finally:
            c.feed.unsubscribe(sub)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"X-Accel-Buffering": "no", "Cache-Control": "no-store"})


def _still_signed_in(request: Request) -> bool:
    return authenticate(request) is not None


# ---- incident ------------------------------------------------------------------------------------------------
@router.get("/incidents/{ref}")
def incident_page(request: Request, ref: str) -> Response:
    c = _c(request)
    a = require(request)
    with c.store.tx() as s:
        view = queries.incident(s, a.who, ref, c.playbooks)
        part = queries.part(s, a.who, ref) if view is None else None
    if part is not None:
        return c.render(request, "part.html", {"v": part, "inc": part.incident, "page": "queue"})
    if view is None:
        raise NotFound("no such incident")
    return c.render(request, "incident.html", {"v": view, "t": view.ticket, "inc": view.incident,
                                               "verdicts": VERDICTS, "statuses": STATUSES, "page": "queue"})


@router.get("/alerts/{alert_id}/raw")
def alert_raw(request: Request, alert_id: str) -> Response:
    """The raw record as text (never as markup: text/plain, nosniff, sandboxed)."""
    c = _c(request)
    a = require(request)
    with c.store.tx() as s:
        al = queries.alert(s, a.who, alert_id)
    if al is None:
        raise NotFound("no such alert")
    return PlainTextResponse(al.raw, headers={"Content-Security-Policy": "sandbox; default-src 'none'",
                                              "Content-Disposition": "inline"})


Field = Annotated[str, Form(max_length=4000)]
Csrf = Annotated[str, Form(max_length=100)]


def _act(request: Request, csrf: str) -> tuple[Console, Auth]:
    c = _c(request)
    a = require(request)
    check_csrf(request, a, csrf)
    return c, a


def _back(ref: str) -> str:
    return f"/incidents/{_path(ref)}"


def _path(ref: str) -> str:
    from urllib.parse import quote

    return quote(ref, safe="")


def _attempt(request: Request, a: Auth, ref: str, fn: Any, ok: str) -> Response:
    """Run an action; a refusal by the ticket rules becomes a message on the incident page."""
    try:
        fn()
    except NotFound:
        raise
    except ConsoleError as e:
        if e.status == 403:
            raise
        return _done(request, a, _back(ref), f"Not done: {e.message}")
    return _done(request, a, _back(ref), ok)


@router.post("/incidents/{ref}/ack")
def ack(request: Request, ref: str, csrf: Csrf = "") -> Response:
    c, a = _act(request, csrf)
    return _attempt(request, a, ref, lambda: c.actions.acknowledge(a.who, ref, client_of(request)), "Acknowledged.")


@router.post("/incidents/{ref}/assign")
def assign(request: Request, ref: str, assignee: Field = "", csrf: Csrf = "") -> Response:
    c, a = _act(request, csrf)
    return _attempt(request, a, ref, lambda: c.actions.assign(a.who, ref, assignee, client_of(request)), "Assigned.")


@router.post("/incidents/{ref}/note")
def note(request: Request, ref: str, text: Field = "", csrf: Csrf = "") -> Response:
    c, a = _act(request, csrf)
    return _attempt(request, a, ref, lambda: c.actions.note(a.who, ref, text, client_of(request)), "Note added.")


@router.post("/incidents/{ref}/status")
def status(request: Request, ref: str, to: Annotated[str, Form(max_length=20)] = "", csrf: Csrf = "") -> Response:
    c, a = _act(request, csrf)
    return _attempt(request, a, ref, lambda: c.actions.set_status(a.who, ref, to, client_of(request)),
                    "Status changed.")


@router.post("/incidents/{ref}/close")
def close(request: Request, ref: str, verdict: Annotated[str, Form(max_length=20)] = "", note: Field = "",
          csrf: Csrf = "") -> Response:
    c, a = _act(request, csrf)
    return _attempt(request, a, ref, lambda: c.actions.close(a.who, ref, verdict, note, client_of(request)),
                    "Closed; the verdict is recorded.")


@router.post("/incidents/{ref}/approve")
def approve(request: Request, ref: str, comment: Field = "", csrf: Csrf = "") -> Response:
    c, a = _act(request, csrf)
    return _attempt(request, a, ref, lambda: c.actions.decide(a.who, ref, True, comment, client_of(request)),
                    "Approved; the playbook resumes.")


@router.post("/incidents/{ref}/deny")
def deny(request: Request, ref: str, comment: Field = "", csrf: Csrf = "") -> Response:
    c, a = _act(request, csrf)
    return _attempt(request, a, ref, lambda: c.actions.decide(a.who, ref, False, comment, client_of(request)),
                    "Denied.")


@router.post("/alerts/{alert_id}/verdict")
def alert_verdict(request: Request, alert_id: str, verdict: Annotated[str, Form(max_length=20)] = "",
                  ticket: Annotated[str, Form(max_length=64)] = "", note: Field = "", csrf: Csrf = "") -> Response:
    c, a = _act(request, csrf)
    ref = ticket or ""
    if not ref:
        raise NotFound("the alert's incident is not named")
    return _attempt(request, a, ref, lambda: c.actions.judge_alert(a.who, alert_id, verdict, note, ref,
                                                                   client_of(request)),
                    f"Alert marked {verdict.replace('_', ' ')}.")


# ---- suppressed alerts ---------------------------------------------------------------------------------------
@router.get("/suppressed")
def suppressed_page(request: Request, tenant: Str = None, status: Str = None) -> Response:
    c = _c(request)
    a = require(request)
    st = status if status in ("suppressed", "unsuppressed", "all") else "suppressed"
    with c.store.tx() as s:
        tenants = queries.tenants(s, a.who)
        chosen = tenant if tenant and a.who.sees(tenant) else (tenants[0] if tenants else None)
        if tenant and not a.who.sees(tenant):
            raise NotFound("no such tenant")
        rows = queries.suppressed(s, a.who, chosen, None if st == "all" else st) if chosen else []
    return c.render(request, "suppressed.html", {"rows": rows, "tenants": tenants, "tenant": chosen, "status": st,
                                                 "page": "suppressed"})


@router.post("/suppressed/{alert_id}/unsuppress")
def unsuppress(request: Request, alert_id: str, note: Field = "", csrf: Csrf = "",
               tenant: Annotated[str, Form(max_length=128)] = "") -> Response:
    c, a = _act(request, csrf)
    back = "/suppressed" + (f"?tenant={_path(tenant)}" if tenant else "")
    try:
        c.actions.unsuppress(a.who, alert_id, note, client_of(request))
    except NotFound:
        raise
    except ConsoleError as e:
        if e.status == 403:
            raise
        return _done(request, a, back, f"Not done: {e.message}")
    return _done(request, a, back, "Released; recorded as a true positive.")


# ---- reports -------------------------------------------------------------------------------------------------
@router.get("/reports")
def reports_page(request: Request) -> Response:
    c = _c(request)
    a = require(request)
    with c.store.tx() as s:
        tenants = queries.tenants(s, a.who)
    return c.render(request, "reports.html", {"tenants": tenants, "today": utcnow().date(), "page": "reports"})


@router.post("/reports")
def report_download(request: Request, tenant: Annotated[str, Form(max_length=128)] = "",
                    period: Annotated[str, Form(max_length=10)] = "week",
                    frm: Annotated[str, Form(alias="from", max_length=10)] = "",
                    fmt: Annotated[str, Form(alias="format", max_length=4)] = "html", csrf: Csrf = "") -> Response:
    """Generate the tenant's report (pipeline/report) and send it as a download."""
    from pipeline.report.data import collect
    from pipeline.report.period import resolve
    from pipeline.report.render import write

    c, a = _act(request, csrf)
    if not a.who.sees(tenant):
        raise NotFound("no such tenant")
    if fmt not in ("html", "pdf") or period not in ("day", "week", "month"):
        raise ConsoleError("format is html or pdf; period is day, week or month")
    try:
        p = resolve(period, date.fromisoformat(frm) if frm else None, None)
    except ValueError as e:
        raise ConsoleError(str(e)) from None
    data = collect(c.store, tenant, p, utcnow())
    tmp = Path(tempfile.mkdtemp(prefix="mdr-report-"))
    path = write(data, fmt, tmp / f"report-{_safe_name(tenant)}-{p.start.date()}.{fmt}")
    audit.log(c.store, a.who, "report", "ok", tenant=tenant, target=f"{period}:{p.start.date()}",
              client=client_of(request), detail={"format": fmt})
    media = "application/pdf" if fmt == "pdf" else "text/html; charset=utf-8"
    return FileResponse(path, media_type=media, filename=path.name, content_disposition_type="attachment",
                        headers={"Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; "
                                                            "img-src data:"},
                        background=BackgroundTask(_rmtree, tmp))


def _safe_name(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s)[:64] or "tenant"


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)


# ---- use cases, health, audit, API docs ----------------------------------------------------------------------
@router.get("/usecases")
def usecases_page(request: Request) -> Response:
    from pipeline import paths
    from pipeline.rules.usecase import load_usecases

    c = _c(request)
    a = require(request)
    ucs = load_usecases(c.cfg.usecases or str(paths.usecases_dir()))
    with c.store.tx() as s:
        stats = queries.usecase_stats(s, a.who, 7)
    items = sorted(ucs.usecases, key=lambda u: (-(stats[u.id].incidents if u.id in stats else 0),
                                                          u.title))
    return c.render(request, "usecases.html", {"ucs": items, "stats": stats, "errors": ucs.errors,
                                               "page": "usecases"})


@router.get("/health")
def health_page(request: Request) -> Response:
    c = _c(request)
    a = require(request)
    lag, lag_error = health.consumer_lag(c.cfg.kafka, c.cfg.group) if c.cfg.kafka else ([], None)
    workers = [health.scoped_worker(health.worker(u), a.who) for u in c.cfg.metrics_urls]
    return c.render(request, "health.html", {"lag": lag, "lag_error": lag_error, "workers": workers,
                                             "store": health.store_view(c.store, a.who), "kafka": c.cfg.kafka,
                                             "group": c.cfg.group, "page": "health"})


@router.get("/audit")
def audit_page(request: Request) -> Response:
    c = _c(request)
    a = require(request)
    return c.render(request, "audit.html", {"entries": audit.entries(c.store, a.who, 300), "page": "audit"})


@router.get("/api-docs")
def api_docs(request: Request) -> Response:
    c = _c(request)
    require(request)
    schema = request.app.openapi()
    ops = [(path, method.upper(), op) for path, item in schema.get("paths", {}).items()
           for method, op in item.items()]
    return c.render(request, "api_docs.html", {"ops": ops, "page": "api"})
