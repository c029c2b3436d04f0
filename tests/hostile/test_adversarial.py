"""The standing adversarial suite (issue 13): attacker-written text, end to end, in `make test`.

Every string of the hostile corpus (tests/hostile/corpus.py: the markup of Rich, Slack, Markdown, HTML and Jira,
the delimiters and keywords of each log grammar, control and bidi characters, invisible and confusable
characters, bytes that are not UTF-8, huge values, configured secrets) is written into every attacker-written
field of every product's real records (tests/hostile/products.py: lab-1's logs, the cloud products' records), the
way the product itself writes that field. Each string is a tenant of its own, and goes through:

1. the reader and the normalize stage, file by file: no crash, nothing lost silently (every record the
   untouched file accounted for is still an alert, a dead letter with its reason or a counted skip), no actor
   moved (who acted, on what, by which rule) but the field's own;
2. `mdr replay`'s core, and its output files;
3. the SOAR adapter: a ticket per incident in a SQLite store, its playbook notifying Slack, DingTalk, WeCom, a
   signed webhook and a log file and opening TheHive and Jira tickets on local servers (per tenant, one incident
   for each set of products its alerts come from), each message carrying the incident and the raw records of its
   first alerts: what the servers receive shows no live markup;
4. the terminal: the replay summary, `mdr tickets list` (every title shown literally), `mdr tickets show` of
   each tenant's ticket with the longest title, the demo's live table: no markup read, no control sequence;
5. the Markdown report of every tenant, the HTML report (with its charts) of all of their rows: no live tag,
   link or image;
6. the analyst console: each tenant's queue and the page of its biggest incident: no live tag, link or handler;
7. every output (files, store rows, payloads, terminal, reports, console pages): no configured secret.

The counts and the wall time of each phase are printed (`pytest -s`). E-mail (one TLS session per message) is
left to tests/hostile/test_sinks.py.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from pipeline.clitext import clean
from pipeline.redact import REDACTOR
from pipeline.replay import ReplayResult
from pipeline.schema import Alert
from tests.hostile.checks import (
    db_rows,
    hive,
    html_live,
    jira,
    jira_live,
    live_markup,
    no_control,
    terminal_live,
    verbatim,
)
from tests.hostile.corpus import HOSTILE, ROOT, SUITE_SECRETS
from tests.hostile.leaks import Leaks
from tests.hostile.products import LAB, Field, actors, fields, to_bytes
from tests.soar.helpers import playbook, write_yaml
from tests.soar.servers import RecordingServer, Reply

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(not (LAB / "host" / "sshd_auth.log").is_file(), reason=f"no lab records in {LAB}")]
HOST = "web-01"
LAB_DAY = date(2026, 11, 24)
CRASH_REASONS = frozenset({"normalizer_error", "core_error", "soar_error"})  # an exception, contained
CHANNELS = ("slack", "ding", "wecom", "hook", "log")
TICKETS = ("hive", "jira")
# a message: the shipped incident template, then the raw records of the incident's first alerts
EVIDENCE = ('{% include "incident.j2" %}\n\nEvidence:\n{% for id, raw in (steps.evidence.raw or {}).items() %}'
            "\n- {{ id }}: {{ raw }}\n{% endfor %}\n")
_SGR = re.compile(r"\x1b\[[0-9;]*m")  # the terminal's colours


def tenant_of(i: int) -> str:
    return f"h{i:03d}"


@dataclass
class Suite:
    """What the run saw: counts, problems by kind, each phase's seconds; every output is scanned for secrets."""

    strings: int = 0
    fields: int = 0
    injections: int = 0  # (string, field) pairs
    records: int = 0  # injected records (an AIDE report or a ClamAV scan is one record)
    alerts: int = 0
    carrying_secrets: int = 0  # alerts whose raw record holds a configured secret (what redaction must catch)
    dead: Counter[str] = field(default_factory=Counter)
    incidents: int = 0
    tickets: int = 0
    notified: int = 0  # incidents whose playbook notified every sink
    payloads: Counter[str] = field(default_factory=Counter)
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    seconds: dict[str, float] = field(default_factory=dict)
    scanned: Counter[str] = field(default_factory=Counter)  # outputs scanned for secrets, by sink
    leaks: Leaks = field(default_factory=lambda: Leaks(SUITE_SECRETS, users=("ops",)))

    def problem(self, kind: str, where: str, what: Any) -> None:
        self.problems[kind].append(f"{where}: {str(what)[:300]}")

    def output(self, sink: str, text: str) -> None:
        """An output of `sink`: no configured secret in any form may be in it."""
        self.scanned[sink] += 1
        if found := self.leaks(text):
            self.problem("secret", sink, found[:3])

    def report(self) -> str:
        lines = [f"hostile inputs: {self.strings} strings x {self.fields} fields = {self.injections} injections, "
                 f"{self.records} records -> {self.alerts} alerts, {sum(self.dead.values())} dead letters, "
                 f"{self.incidents} incidents, {self.tickets} tickets ({self.notified} through every sink), "
                 f"{sum(self.payloads.values())} sink payloads",
                 f"dead letters by reason: {dict(self.dead.most_common())}",
                 f"payloads by sink: {dict(sorted(self.payloads.items()))}",
                 f"outputs scanned for secrets: {dict(sorted(self.scanned.items()))}",
                 "seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()),
                 "problems: " + (", ".join(f"{k} {len(v)}" for k, v in self.problems.items() if v) or "none")]
        return "\n".join(lines)


# ---- phase 1: the reader and the normalize stage, file by file ----------------------------------------------
def write_field(path: Path, f: Field, records: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_bytes(records[0]) if f.document else b"".join(to_bytes(r) + b"\n" for r in records))


@dataclass
class Normalized:
    alerts: list[Alert]
    dead: list
    skipped: Counter[str]
    records: int

    @property
    def outcomes(self) -> int:
        """Records accounted for: that gave alerts (an AIDE report gives several), were dead-lettered or skipped
        for good (a detection a normalizer holds until its report's time is read is skipped as `held` or
        `buffered`, then becomes an alert)."""
        final = sum(n for why, n in self.skipped.items() if not why.endswith((":held", ":buffered")))
        return min(len(self.alerts), self.records) + len(self.dead) + final


def normalize_file(path: Path, tenant: str) -> Normalized:
    """The alerts, dead letters and skips of one file, read and normalized as `mdr replay` does."""
    from pipeline.normalize.source import read_alerts

    res = read_alerts([str(path)], tenant, HOST)
    return Normalized(res.alerts, res.dead, res.skipped, res.records)


def _actors(a: Alert, owned: frozenset[str]) -> tuple:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in actors(a).items() if k not in owned)


def normalize_phase(s: Suite, root: Path, fs: list[Field]) -> None:
    base: dict[str, tuple[int, Counter]] = {}
    for f in fs:
        p = root / "base" / f.fmt / f"{f.name}.log"
        write_field(p, f, list(f.records))
        n = normalize_file(p, "shop")
        assert (n.alerts or n.skipped) and not n.dead, (f.key, n.dead)  # real detections (access logs: context)
        base[f.key] = (n.outcomes, Counter(_actors(a, f.owns) for a in n.alerts))
    for i, (name, value) in enumerate(HOSTILE.items()):
        for f in fs:
            records = f.inject(value)
            p = root / tenant_of(i) / f.fmt / f"{f.name}.log"
            write_field(p, f, records)
            s.injections += 1
            s.records += len(records)
            where = f"{f.key} <- {name}"
            try:
                n = normalize_file(p, "shop")
            except Exception as e:  # the stage must never raise
                s.problem("crash", where, repr(e))
                continue
            outcomes, actors_base = base[f.key]
            for d in n.dead:
                if d.reason in CRASH_REASONS:
                    s.problem("crash", where, f"{d.reason}: {d.detail}")
            if n.outcomes < outcomes:
                s.problem("lost", where, f"{outcomes} records accounted for before, now {n.outcomes}: "
                                         f"{len(n.alerts)} alerts, {len(n.dead)} dead letters, {dict(n.skipped)}")
            moved = Counter(_actors(a, f.owns) for a in n.alerts) - actors_base
            if moved:
                s.problem("actors", where, next(iter(moved)))


# ---- phase 2: the core, per tenant ------------------------------------------------------------------------
def replay_phase(s: Suite, root: Path, out: Path) -> ReplayResult:
    """Each string's tenant through `mdr replay`'s core and output files; all of them as one result."""
    from pipeline.core.engine import Core
    from pipeline.replay import replay, write_outputs
    from pipeline.rules.usecase import load_usecases

    ucs = load_usecases(str(ROOT / "usecases"))
    merged = ReplayResult()
    for i, name in enumerate(HOSTILE):
        tenant = tenant_of(i)
        try:
            res = replay([str(root / tenant)], Core(ucs), tenant, HOST)
        except Exception as e:
            s.problem("crash", f"replay <- {name}", repr(e))
            continue
        for d in res.dead:
            s.dead[d.reason] += 1
            if d.reason in CRASH_REASONS:
                s.problem("crash", f"core <- {name}", f"{d.reason} ({d.stage}): {d.detail}")
        for path in write_outputs(res, out / tenant).values():
            s.output("files", path.read_text(encoding="utf-8", errors="replace"))
        s.alerts += res.alerts_raw
        s.carrying_secrets += sum(any(v in a.raw for v in SUITE_SECRETS.values()) for a in res.alerts)
        merged.records += res.records
        merged.alerts += res.alerts
        merged.dead += res.dead
        merged.suppressed += res.suppressed
        merged.incidents.update(res.incidents)
    s.incidents = len(merged.open_incidents)
    return merged


# ---- phase 3: tickets and every notification sink -----------------------------------------------------------
@dataclass
class Sinks:
    servers: dict[str, RecordingServer]
    channels: Path
    playbooks: Path
    log: Path

    def close(self) -> None:
        for srv in self.servers.values():
            srv.close()


def start_sinks(d: Path) -> Sinks:
    ok = {"errcode": 0}
    srv = {"slack": RecordingServer(lambda q: Reply(200, "ok")), "ding": RecordingServer(lambda q: Reply(200, ok)),
           "wecom": RecordingServer(lambda q: Reply(200, ok)), "hive": RecordingServer(hive),
           "jira": RecordingServer(jira), "hook": RecordingServer()}
    log = d / "notices.jsonl"
    channels = {
        "slack": {"type": "slack", "url": srv["slack"].url + "/services/T0/B0/hostile"},
        "ding": {"type": "dingtalk", "url": srv["ding"].url + "/robot/send?access_token=t"},
        "wecom": {"type": "wecom", "url": srv["wecom"].url + "/cgi-bin/webhook/send?key=k"},
        "hive": {"type": "thehive", "url": srv["hive"].url, "api_key": "hive-key"},
        "jira": {"type": "jira", "url": srv["jira"].url, "project": "SEC", "username": "ops",
                 "token": SUITE_SECRETS["password"]},
        "hook": {"type": "webhook", "url": srv["hook"].url + "/in", "secret": SUITE_SECRETS["token"]},
        "log": {"type": "log", "path": str(log)},
    }
    pbs = d / "playbooks"
    shutil.copytree(ROOT / "playbooks" / "templates", pbs / "templates")
    (pbs / "templates" / "evidence.j2").write_text(EVIDENCE, encoding="utf-8")
    # five raw records: escaped for markdown, the raw records of twenty hostile alerts exceed a render's budget
    steps: list[dict[str, Any]] = [{"id": "evidence", "collect": {"alerts": True, "raw": True, "limit": 5}}]
    steps += [{"notify": {"channel": c, "template": "evidence"}} for c in CHANNELS]
    steps += [{"ticket": {"action": "open", "channel": c, "template": "evidence"}} for c in TICKETS]
    write_yaml(pbs / "all-sinks.yaml", playbook("all-sinks", steps))
    return Sinks(srv, write_yaml(d / "channels.yaml", {"channels": channels}), pbs, log)


def sink_incidents(res: ReplayResult) -> dict[str, Any]:
    """The incidents whose playbook runs: per tenant (string), one open incident for each set of products its
    alerts come from (with the incidents fused into it). Every product's text, as the product escapes it in the
    raw record and as its normalizer reads it, so reaches every sink, at half the cost of all incidents."""
    fmt = {a.alert_id: a.source.format for a in res.alerts}
    chosen, seen = set(), set()
    for inc in res.open_incidents:
        key = (inc.tenant_id, frozenset(fmt.get(x) for x in inc.alert_ids))
        if key not in seen:
            seen.add(key)
            chosen.add(inc.incident_id)
    return {k: i for k, i in res.incidents.items() if k in chosen or i.merged_into in chosen}


def ticket_phase(s: Suite, res: ReplayResult, sinks: Sinks, db_url: str, out: Path) -> None:
    """The chosen incidents through the SOAR adapter and their playbooks; the others' tickets written by the same
    store (the terminal and the reports show every ticket)."""
    from pipeline.soar.actions import handle_replay
    from pipeline.soar.tickets import TicketStore

    chosen = sink_incidents(res)
    done = handle_replay(ReplayResult(alerts=res.alerts, incidents=chosen), out, db_url, playbooks=sinks.playbooks,
                         channels=sinks.channels, drain_timeout=600)
    assert done.errors == [] and done.settled, (done.errors, done.settled)
    for d in done.dead:
        s.problem("crash", "ticket store", d.detail)
    s.notified = sum(i.status != "merged" for i in chosen.values())
    store = TicketStore(db_url)
    try:
        others = [i for i in res.sorted_incidents() if i.incident_id not in chosen]
        store.apply_batch(others, lambda _: [])
        s.tickets = len(store.list(limit=100_000))
    finally:
        store.close()
    text = done.path.read_text(encoding="utf-8")
    s.output("files", text)
    for t in map(json.loads, filter(None, text.split("\n"))):  # not splitlines(): U+2028 is JSON text
        for e in t["timeline"]:
            if e["status"] == "failed":
                s.problem("crash", f"ticket {t['id']} ({t['tenant_id']})", e["text"])


def payload_phase(s: Suite, sinks: Sinks) -> None:
    """What each local server received: the escaping of its own syntax held."""
    srv = sinks.servers
    for r in srv["slack"].requests:
        b = r.json
        for t in [b["text"], *(blk["text"]["text"] for blk in b["blocks"] if "text" in blk)]:
            if "<" in t or ">" in t or not no_control(t):
                s.problem("markup slack", "slack", t)
    chat = [("ding", r.json["markdown"]["text"], r.json["markdown"]["title"]) for r in srv["ding"].requests]
    chat += [("wecom", r.json["markdown"]["content"], "") for r in srv["wecom"].requests]
    chat += [("hive", r.json["description"], r.json["title"]) for r in srv["hive"].requests
             if r.path == "/api/v1/alert"]
    for sink, md, title in chat:
        if live_markup(md) or not no_control(md) or not no_control(title):
            s.problem(f"markup {sink}", sink, live_markup(md) or md)
    for r in srv["jira"].requests:
        if r.path == "/rest/api/2/issue":
            f = r.json["fields"]
            if jira_live(f["description"]) or not no_control(f["description"] + f["summary"]):
                s.problem("markup jira", "jira", jira_live(f["description"]) or f["description"])
    for name, x in srv.items():
        s.payloads[name] = len(x.requests)
        for r in x.requests:
            s.output(name, r.body.decode("utf-8", "replace"))
    log = sinks.log.read_text(encoding="utf-8")
    s.payloads["log"] = log.count("\n")
    if not no_control(log) or "\x1b" in log:
        s.problem("markup log", "log file", "a control character")
    s.output("log", log)


# ---- phase 4: the terminal ------------------------------------------------------------------------------------
def terminal_phase(s: Suite, res: ReplayResult, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.cli
    import pipeline.soar.cli
    from pipeline.soar.tickets import TicketStore
    from pipeline.tables import incident_table

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, color_system="truecolor", width=1000)
    for mod, name in ((pipeline.cli, "console"), (pipeline.soar.cli, "out"), (pipeline.soar.cli, "err")):
        monkeypatch.setattr(mod, name, console)
    by_tenant: dict[str, ReplayResult] = defaultdict(ReplayResult)
    for inc in res.incidents.values():
        by_tenant[inc.tenant_id].incidents[inc.incident_id] = inc
    for r in by_tenant.values():
        pipeline.cli._summary(r)  # the replay summary's incident table
    console.print(incident_table(res.open_incidents, console.width, "streaming"))  # the demo's live table
    store = TicketStore(db_url)
    try:
        monkeypatch.setattr(pipeline.soar.cli, "_store", lambda db: nullcontext(store))  # one store for all
        pipeline.soar.cli.tickets_list(limit=100_000, db=db_url)
        rows = {int(line.split()[0]): line for line in _SGR.sub("", buf.getvalue()).splitlines()
                if line.split() and line.split()[0].isdigit()}  # a row starts with the ticket's id
        longest: dict[str, Any] = {}  # per tenant, the ticket with the longest title: `tickets show` of it
        for t in store.list(limit=100_000):
            if clean(t.title)[:200].rstrip() not in rows.get(t.id, ""):  # a long title ends in an ellipsis
                s.problem("markup terminal", f"tickets list, ticket {t.id}", f"title not shown literally: {t.title}")
            if len(t.title) > len(getattr(longest.get(t.tenant_id), "title", "")):
                longest[t.tenant_id] = t
        for t in longest.values():
            pipeline.soar.cli.tickets_show(str(t.id), db=db_url)
    finally:
        store.close()
    shown = buf.getvalue()
    if bad := terminal_live(shown):
        s.problem("markup terminal", "terminal", bad)
    if "\x1b]8;" in shown:
        s.problem("markup terminal", "terminal", "an OSC 8 link")
    s.output("terminal", shown)


# ---- phase 5: the reports -------------------------------------------------------------------------------------
def report_phase(s: Suite, res: ReplayResult, db_url: str) -> None:
    """Every tenant's report of the lab week (the cloud records are of other years) as Markdown; one HTML
    document of all of their rows (the HTML renderer, charts included, once rather than once per tenant)."""
    from pipeline.report.data import collect
    from pipeline.report.period import period_of
    from pipeline.report.render import render_html, render_markdown
    from pipeline.report.stats import record_stats
    from pipeline.soar.tickets import TicketStore

    period = period_of("week", LAB_DAY)
    store = TicketStore(db_url)
    reports = []
    try:
        for tenant in sorted({i.tenant_id for i in res.incidents.values()}):
            record_stats(store, tenant, ReplayResult(alerts=[a for a in res.alerts if a.tenant_id == tenant],
                                                     dead=[d for d in res.dead if d.tenant_id == tenant]))
            data = collect(store, tenant, period, datetime.now(UTC))
            md = render_markdown(data)
            if live := live_markup(md):
                s.problem("markup report.md", tenant, live)
            s.output("report.md", md)
            reports.append(data)
    finally:
        store.close()
    every = replace(reports[0], tenant="all", incidents=[i for d in reports for i in d.incidents],
                    top_attackers=_union(d.top_attackers for d in reports),
                    top_assets=_union(d.top_assets for d in reports),
                    top_use_cases=_union(d.top_use_cases for d in reports))
    html = render_html(every)
    if live := html_live(html, allowed=frozenset({"svg", "b", "style"})) + verbatim(html, HOSTILE.values()):
        s.problem("markup report.html", "all tenants", live)
    s.output("report.html", html)
    s.payloads["reports"] = len(reports) + 1


def _union(rows: Iterator[list[tuple]]) -> list[tuple]:
    return list(dict.fromkeys(r for rs in rows for r in rs))


# ---- phase 6: the analyst console ------------------------------------------------------------------------------
CONSOLE_TAGS = frozenset({"a", "script", "textarea"})  # its own links, script file and note field


def console_phase(s: Suite, res: ReplayResult, db_url: str) -> None:
    """Per tenant: the queue, and the page of its incident with the most alerts (the alerts' normalized fields
    are on it), served by a real console to a signed-in admin."""
    from pipeline.console.auth import add_user
    from pipeline.console.web import ConsoleConfig
    from pipeline.soar.tickets import TicketStore
    from tests.console.server import PASSWORD, ConsoleServer, login

    store = TicketStore(db_url)
    try:
        add_user(store, "root", "admin", [], PASSWORD)
    finally:
        store.close()
    biggest: dict[str, Any] = {}
    for inc in res.open_incidents:
        if inc.alert_count > getattr(biggest.get(inc.tenant_id), "alert_count", 0):
            biggest[inc.tenant_id] = inc
    with ConsoleServer(ConsoleConfig(db_url=db_url, run_playbooks=False)) as srv, srv.client() as c:
        assert login(c, "root").status_code == 303
        for i, name in enumerate(HOSTILE):
            tenant = tenant_of(i)
            pages = {"queue": c.get("/queue", params={"tenant": tenant, "status": "all"})}
            if tenant in biggest:
                pages["incident"] = c.get(f"/incidents/{biggest[tenant].incident_id}")
            for page, r in pages.items():
                where = f"console {page} <- {name}"
                if r.status_code != 200:
                    s.problem("crash", where, f"HTTP {r.status_code}")
                elif live := html_live(r.text, CONSOLE_TAGS) + verbatim(r.text, [HOSTILE[name]]):
                    s.problem("markup console", where, live)
                s.output("console", r.text)
            s.payloads["console"] += len(pages)


# ---- phase 7: secrets -----------------------------------------------------------------------------------------
def secret_phase(s: Suite, db_url: str) -> None:
    """Every row of every table of the store (the other outputs were scanned as they were made)."""
    s.output("store rows", db_rows(db_url))


# ---- the run --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    from pipeline.soar.actions import register_secrets

    d = tmp_path_factory.mktemp("adversarial")
    db_url = f"sqlite:///{d}/soar.db"
    fs = fields()
    s = Suite(strings=len(HOSTILE), fields=len(fs))
    sinks = start_sinks(d)
    t0 = last = time.perf_counter()
    cpu0 = time.process_time()

    def lap(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        s.seconds[name], last = now - last, now
        print(f"{name}: {s.seconds[name]:.1f} s", flush=True)

    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("MDR_SECRETS_FILE", raising=False)
            register_secrets(db_url, sinks.channels)  # as `mdr replay` does before writing anything
            normalize_phase(s, d / "in", fs)
            lap("normalize")
            res = replay_phase(s, d / "in", d / "out")
            lap("replay")
            ticket_phase(s, res, sinks, db_url, d / "out")
            lap("tickets+sinks")
            payload_phase(s, sinks)
            lap("payloads")
            terminal_phase(s, res, db_url, mp)
            lap("terminal")
            report_phase(s, res, db_url)
            lap("reports")
            console_phase(s, res, db_url)
            lap("console")
            secret_phase(s, db_url)
            lap("secrets")
    finally:
        sinks.close()
        REDACTOR.clear()
    s.seconds["total"] = time.perf_counter() - t0
    s.seconds["cpu"] = time.process_time() - cpu0  # this process's CPU time: what the load of others leaves out
    print("\n" + s.report())
    yield s


def test_the_corpus_is_exercised(suite: Suite) -> None:
    """Every string in every field of every product, and every sink saw the run."""
    assert suite.strings >= 90 and suite.fields >= 45
    assert suite.injections == suite.strings * suite.fields and suite.records >= 15_000
    assert suite.incidents >= suite.strings and suite.tickets == suite.incidents
    assert suite.notified >= 5 * suite.strings
    assert all(suite.payloads[k] >= suite.notified for k in (*CHANNELS, *TICKETS)), suite.payloads
    assert suite.payloads["console"] >= suite.strings and suite.payloads["reports"] > suite.strings
    assert suite.carrying_secrets > 0 and set(suite.scanned) >= {
        "files", *CHANNELS, *TICKETS, "terminal", "report.md", "report.html", "console", "store rows"}


def test_nothing_crashes(suite: Suite) -> None:
    assert suite.problems["crash"] == []


def test_nothing_is_lost_silently(suite: Suite) -> None:
    assert suite.problems["lost"] == []


def test_no_text_moves_an_actor(suite: Suite) -> None:
    assert suite.problems["actors"] == []


def test_no_sink_shows_live_markup(suite: Suite) -> None:
    assert {k: v[:5] for k, v in suite.problems.items() if k.startswith("markup") and v} == {}


def test_no_secret_in_any_output(suite: Suite) -> None:
    assert suite.problems["secret"] == []
