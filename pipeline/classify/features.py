"""Feature extraction for the noise classifier (feature schema version `FEATURE_VERSION`).

One row of floats per alert, product-agnostic (fields a product lacks are 0). The fixed part (`FIXED`):

- product: `family=*` one-hot; learned vocabulary `product=<format>`.
- rules: `n_rules`, `n_distinct_rules`, `n_techniques` (ATT&CK ids), `rule_sev=*` counts of the alert's rules by
  severity (CRS CRITICAL/ERROR/WARNING/NOTICE, Suricata 1..4, plain labels), `min_paranoia_level` (CRS);
  learned vocabularies `rule=<id>` (presence) and `cat=<category>` (number of the alert's rules in it).
- `severity` (alert score / 100), `action=*` one-hot.
- product scores from `extra` (`x:anomaly_score`, CRS per-category and per-paranoia-level scores).
- HTTP: `method=*`, `status=*xx`, path shape (length, depth, extension kind, special characters, `..`, `%`)
  and argument statistics: the query string (decoded) or, without one, the `ARGS:name=value` strings the product
  reported as matched data (ModSecurity POST bodies), cut at `ARG_MAX` characters — length, parameter count,
  Shannon entropy, counts of quotes, angle brackets, parentheses, `;`, comment markers, `=`, spaces, slashes,
  dots, left-over `%` (double encoding), and digit / upper-case / non-alphanumeric / non-ASCII shares.
- `ua=*`: user-agent family (browser, mobile, script, scanner, bot, empty, other).
- source history (`src_*`): alerts, distinct rule ids and distinct targets (host + path) from the same tenant +
  source (src ip, else user, else host) in the last 1 min / 10 min / 1 h, and the gap since its previous alert.
- `rule_rarity` / `rule_rarity_max`: log(1 + tenant alerts) - log(1 + tenant alerts with the rule), with counts
  decayed over a 1-day time constant, for the primary rule and the rarest rule of the alert.
- context: `asset_criticality` (0 none, 1 low .. 4 critical), `intel_hits`, `hour_sin`/`hour_cos` (UTC),
  `weekend`.

History semantics (`SourceHistory`, `TenantRules`): an alert at event time t sees exactly the alerts of its key
with time < t (strictly earlier, so ties never depend on arrival order). Alerts are processed in event-time order
inside a batch; replay feeds batches in event-time order, so the streaming worker, fed the same source's alerts in
order, computes the same values. An alert arriving after a later one of its key (out of order) sees what arrived
before it; its own entry still lands at its time position. State lives in two plain mappings
(`ClassifierState.sources` keyed `tenant\\x1fsource`, `ClassifierState.tenants` keyed by tenant) that a worker can
back with partitioned tables; values are reassigned after each update so table-backed mappings persist them.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import numpy as np

from pipeline.schema import ACTIONS, FAMILIES, Alert

FEATURE_VERSION = "1"
WINDOWS = (60.0, 600.0, 3600.0)
WINDOW_NAMES = ("1m", "10m", "1h")
GAP_CAP = 86400.0
RARITY_TAU = 86400.0
ARG_MAX = 512
SEP = "\x1f"

METHODS = ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "other", "none")
STATUSES = ("2xx", "3xx", "4xx", "5xx", "none")
UA_FAMILIES = ("browser", "mobile", "script", "scanner", "bot", "empty", "other")
RULE_SEVERITIES = ("critical", "high", "medium", "low", "info")
EXTRA_SCORES = (
    "anomaly_score", "sql_injection_score", "xss_score", "rfi_score", "lfi_score", "rce_score",
    "php_injection_score", "http_violation_score", "session_fixation_score",
    "anomaly_score_pl1", "anomaly_score_pl2", "anomaly_score_pl3", "anomaly_score_pl4",
)
ARG_FEATURES = (
    "has_args", "args_n", "args_len", "args_entropy", "args_quote", "args_angle", "args_paren", "args_semicolon",
    "args_comment", "args_eq", "args_space", "args_slash", "args_dot", "args_pct", "args_digit_share",
    "args_upper_share", "args_special_share", "args_nonascii",
)
PATH_FEATURES = ("path_len", "path_depth", "path_ext_script", "path_ext_static", "path_special", "path_dotdot",
                 "path_pct")
HISTORY_FEATURES = tuple(f"src_{kind}_{w}" for w in WINDOW_NAMES for kind in ("alerts", "rules", "targets")) + (
    "src_gap",)
FIXED: tuple[str, ...] = (
    ("severity", "n_rules", "n_distinct_rules", "n_techniques", "min_paranoia_level")
    + tuple(f"action={a}" for a in ACTIONS)
    + tuple(f"family={f}" for f in FAMILIES)
    + tuple(f"rule_sev={s}" for s in RULE_SEVERITIES)
    + tuple(f"x:{k}" for k in EXTRA_SCORES)
    + tuple(f"method={m}" for m in METHODS)
    + tuple(f"status={s}" for s in STATUSES)
    + PATH_FEATURES + ARG_FEATURES
    + tuple(f"ua={u}" for u in UA_FAMILIES)
    + HISTORY_FEATURES
    + ("rule_rarity", "rule_rarity_max", "asset_criticality", "intel_hits", "hour_sin", "hour_cos", "weekend")
)
# Feature groups an ablation can switch off (evaluate's "content only" figures).
HISTORY_GROUP = frozenset(HISTORY_FEATURES)

_SEV_MAP = {
    "emergency": 0, "alert": 0, "critical": 0, "error": 1, "high": 1, "1": 1, "warning": 2, "medium": 2, "2": 2,
    "notice": 3, "low": 3, "3": 3, "info": 4, "informational": 4, "debug": 4, "4": 4,
}
_CRITICALITY = {"low": 1, "medium": 2, "high": 3, "critical": 4}
_SCRIPT_EXT = frozenset(("php", "asp", "aspx", "jsp", "cgi", "pl", "py", "sh", "do", "action", "exe", "dll"))
_STATIC_EXT = frozenset(("html", "htm", "css", "js", "png", "jpg", "jpeg", "gif", "svg", "ico", "txt", "xml",
                         "json", "woff", "woff2", "pdf", "map"))
_PATH_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-~")
_SCANNERS = ("sqlmap", "nikto", "nmap", "dirb", "gobuster", "wpscan", "masscan", "nuclei", "acunetix", "zgrab",
             "w3af", "openvas", "nessus", "havij", "zap", "burp", "fuzz", "hydra", "ffuf", "feroxbuster")
_SCRIPTS = ("curl", "wget", "python", "go-http", "java", "okhttp", "libwww", "perl", "ruby", "php", "axios",
            "node", "httpclient", "powershell", "aiohttp", "requests")
_BOTS = ("bot", "crawl", "spider", "slurp", "facebookexternalhit", "monitor", "uptime")
_MOBILE = ("mobile", "android", "iphone", "ipad")


def ua_family(ua: str | None) -> str:
    """User-agent family: browser, mobile, script, scanner, bot, empty or other."""
    if not ua or not ua.strip() or ua == "-":
        return "empty"
    u = ua.lower()
    if any(s in u for s in _SCANNERS):
        return "scanner"
    if any(s in u for s in _BOTS):
        return "bot"
    if u.startswith("mozilla/") or u.startswith("opera"):
        return "mobile" if any(s in u for s in _MOBILE) else "browser"
    if any(s in u for s in _SCRIPTS):
        return "script"
    return "other"


def arg_text(a: Alert) -> str:
    """The request arguments: decoded query string, else the product's matched `ARGS:` data ('' if none)."""
    http = a.http
    if http is not None and http.url:
        _, q, query = http.url.partition("?")
        if q:
            return unquote_plus(query[:ARG_MAX * 3], errors="replace")[:ARG_MAX]
    data = a.extra.get("matched_data")
    if isinstance(data, list):
        vals = [d.partition("=")[2] for d in data if isinstance(d, str) and d.startswith("ARGS:")]
        return "&".join(vals)[:ARG_MAX]
    return ""


def arg_stats(s: str) -> list[float]:
    """Statistics of an argument string, in `ARG_FEATURES` order."""
    n = len(s)
    if n == 0:
        return [0.0] * len(ARG_FEATURES)
    counts = Counter(s)
    ent = -sum(c * math.log2(c / n) for c in counts.values()) / n
    digits = sum(counts[c] for c in "0123456789")
    upper = sum(1 for ch in s if "A" <= ch <= "Z") if not s.islower() else 0
    alnum = digits + sum(v for k, v in counts.items() if k.isalpha())
    nonascii = 0 if s.isascii() else sum(1 for ch in s if ord(ch) > 127)
    g = counts.get
    return [
        1.0, float(s.count("&") + 1), float(n), ent, float(g("'", 0) + g('"', 0)), float(g("<", 0) + g(">", 0)),
        float(g("(", 0) + g(")", 0)), float(g(";", 0)), float(s.count("--") + s.count("/*") + g("#", 0)),
        float(g("=", 0)), float(g(" ", 0) + g("+", 0)), float(g("/", 0) + g("\\", 0)), float(g(".", 0)),
        float(g("%", 0)), digits / n, upper / n, (n - alnum) / n, float(nonascii),
    ]


def path_stats(url: str | None) -> list[float]:
    """Shape of the URL path, in `PATH_FEATURES` order."""
    if not url:
        return [0.0] * len(PATH_FEATURES)
    path = url.partition("?")[0]
    last = path.rpartition("/")[2]
    ext = last.rpartition(".")[2].lower() if "." in last else ""
    special = sum(1 for ch in path if ch not in _PATH_OK)
    return [float(len(path)), float(path.count("/")), float(ext in _SCRIPT_EXT), float(ext in _STATIC_EXT),
            float(special), float(path.count("..")), float(path.count("%"))]


def source_key(a: Alert) -> str | None:
    """History key: tenant + source (src ip, else user, else host name); None when the alert has none."""
    s = a.src.ip or a.user or (a.host.name if a.host else None)
    return f"{a.tenant_id}{SEP}{s}" if s else None


def target_of(a: Alert) -> str:
    http = a.http
    where = a.dst.hostname or (http.host if http else None) or a.dst.ip or (a.host.name if a.host else "") or ""
    path = http.url.partition("?")[0] if http is not None and http.url else ""
    return where + path


def rule_ids(a: Alert) -> tuple[str, ...]:
    if a.rules:
        return tuple(dict.fromkeys(r.id for r in a.rules if r.id))
    return (a.rule.id,) if a.rule.id else ()


class SourceHistory:
    """Alerts of one tenant + source in the last `WINDOWS` (event time): counts, distinct rules and targets.

    Committed entries (time < the newest time seen) are kept sorted for the longest window; each window keeps
    its start index and multisets of rules and targets, so an in-order alert costs O(rules). Entries at the
    newest time wait in `pending` until a later time arrives (strictly-earlier semantics)."""

    __slots__ = ("lo", "pend", "pend_t", "rc", "rules", "targets", "tc", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.rules: list[tuple[str, ...]] = []
        self.targets: list[str] = []
        self.lo = [0] * len(WINDOWS)
        self.rc: list[Counter[str]] = [Counter() for _ in WINDOWS]
        self.tc: list[Counter[str]] = [Counter() for _ in WINDOWS]
        self.pend: list[tuple[tuple[str, ...], str]] = []
        self.pend_t = -math.inf

    def observe(self, t: float, rules: tuple[str, ...], target: str) -> list[float]:
        """Features of an alert at time t (`HISTORY_FEATURES` order), then record it."""
        if t < self.pend_t:
            return self._late(t, rules, target)
        if t > self.pend_t:
            for r, tg in self.pend:
                self._append(self.pend_t, r, tg)
            self.pend = []
            self.pend_t = t
        out: list[float] = []
        n = len(self.times)
        for w, span in enumerate(WINDOWS):
            lo, rc, tc, cut = self.lo[w], self.rc[w], self.tc[w], t - span
            while lo < n and self.times[lo] < cut:
                _drop(rc, self.rules[lo])
                _drop(tc, (self.targets[lo],))
                lo += 1
            self.lo[w] = lo
            out += (math.log1p(n - lo), float(len(rc)), float(len(tc)))
        out.append(math.log1p(min(t - self.times[-1], GAP_CAP) if n else GAP_CAP))
        self.pend.append((rules, target))
        self._compact()
        return out

    def _append(self, t: float, rules: tuple[str, ...], target: str) -> None:
        self.times.append(t)
        self.rules.append(rules)
        self.targets.append(target)
        for w in range(len(WINDOWS)):
            self.rc[w].update(rules)
            self.tc[w][target] += 1

    def _late(self, t: float, rules: tuple[str, ...], target: str) -> list[float]:
        """An out-of-order alert: scan the committed entries, then insert it at its time position."""
        out: list[float] = []
        hi = bisect_left(self.times, t)
        for span in WINDOWS:
            lo = bisect_left(self.times, t - span, 0, hi)
            rs = {r for rr in self.rules[lo:hi] for r in rr}
            out += (math.log1p(hi - lo), float(len(rs)), float(len(set(self.targets[lo:hi]))))
        out.append(math.log1p(min(t - self.times[hi - 1], GAP_CAP) if hi else GAP_CAP))
        i = bisect_right(self.times, t)
        self.times.insert(i, t)
        self.rules.insert(i, rules)
        self.targets.insert(i, target)
        for w in range(len(WINDOWS)):
            if i < self.lo[w]:
                self.lo[w] += 1
            else:  # inside (or just before) the window; evicted by the next in-order alert if too old
                self.rc[w].update(rules)
                self.tc[w][target] += 1
        return out

    def _compact(self) -> None:
        k = self.lo[-1]
        if k >= 256:
            del self.times[:k], self.rules[:k], self.targets[:k]
            self.lo = [x - k for x in self.lo]

    def idle(self, now: float) -> bool:
        """True when nothing of this source is inside the longest window at event time `now`."""
        newest = self.pend_t if self.pend else (self.times[-1] if self.times else -math.inf)
        return newest < now - WINDOWS[-1]


def _drop(c: Counter[str], keys: Sequence[str]) -> None:
    for k in keys:
        v = c[k] - 1
        if v:
            c[k] = v
        else:
            del c[k]


class TenantRules:
    """Per-tenant rule frequencies, exponentially decayed in event time (time constant `RARITY_TAU`).

    Sums are kept scaled by exp((t - anchor)/tau), so shares need no per-alert decay step; alerts at the newest
    time wait in `pend` (strictly-earlier semantics, as in `SourceHistory`). Late alerts are added at their own
    time but see the sums as they stand (documented approximation)."""

    __slots__ = ("anchor", "counts", "pend", "pend_t", "total")

    def __init__(self) -> None:
        self.anchor: float | None = None
        self.counts: dict[str, float] = {}
        self.total = 0.0
        self.pend: list[tuple[str, ...]] = []
        self.pend_t = -math.inf

    def observe(self, t: float, rules: tuple[str, ...]) -> tuple[float, float]:
        """(rarity of the first rule, max rarity over the rules) at time t, then record the alert."""
        if t > self.pend_t:
            for r in self.pend:
                self._add(self.pend_t, r)
            self.pend = []
            self.pend_t = t
        base = math.log1p(self.total)
        get = self.counts.get
        rar = [base - math.log1p(get(r, 0.0)) for r in rules] or [0.0]
        if t < self.pend_t:
            self._add(t, rules)
        else:
            self.pend.append(rules)
        return rar[0], max(rar)

    def _add(self, t: float, rules: tuple[str, ...]) -> None:
        if self.anchor is None:
            self.anchor = t
        x = (t - self.anchor) / RARITY_TAU
        if x > 50.0:  # rescale before exp overflows the useful range
            f = math.exp(-x)
            self.counts = {k: v * f for k, v in self.counts.items()}
            self.total *= f
            self.anchor, x = t, 0.0
        w = math.exp(x)
        self.total += w
        c = self.counts
        for r in rules:
            c[r] = c.get(r, 0.0) + w


@dataclass(slots=True)
class ClassifierState:
    """The classifier's streaming state: plain mappings an adapter may back with partitioned tables."""

    sources: MutableMapping[str, SourceHistory] = field(default_factory=dict)  # tenant \x1f source
    tenants: MutableMapping[str, TenantRules] = field(default_factory=dict)  # tenant

    def expire(self, now: float) -> int:
        """Drop source histories idle for longer than the longest window; returns how many."""
        idle = [k for k, h in self.sources.items() if h.idle(now)]
        for k in idle:
            del self.sources[k]
        return len(idle)


@dataclass(slots=True)
class Vocabulary:
    """Learned parts of the schema: rule ids, rule categories and product formats seen in training."""

    rules: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)

    @classmethod
    def learn(cls, alerts: Sequence[Alert], min_count: int = 5, max_rules: int = 300) -> Vocabulary:
        rules: Counter[str] = Counter()
        cats: Counter[str] = Counter()
        prods: Counter[str] = Counter()
        for a in alerts:
            rules.update(rule_ids(a))
            cats.update({r.category for r in (a.rules or [a.rule]) if r.category})
            prods[a.source.format or a.source.product] += 1
        keep = [r for r, n in rules.most_common(max_rules) if n >= min_count]
        return cls(sorted(keep), sorted(c for c, n in cats.items() if n >= min_count),
                   sorted(p for p, n in prods.items() if n >= min_count))

    def to_dict(self) -> dict[str, list[str]]:
        return {"rules": self.rules, "categories": self.categories, "products": self.products}


class FeatureSchema:
    """Names and column positions of the features for one vocabulary."""

    def __init__(self, vocab: Vocabulary, version: str = FEATURE_VERSION):
        if version != FEATURE_VERSION:
            raise ValueError(f"feature schema {version} is not supported (this build: {FEATURE_VERSION})")
        self.version = version
        self.vocab = vocab
        self.names: list[str] = [*FIXED, *(f"rule={r}" for r in vocab.rules),
                                 *(f"cat={c}" for c in vocab.categories),
                                 *(f"product={p}" for p in vocab.products)]
        self.index = {n: i for i, n in enumerate(self.names)}
        self.n_fixed = len(FIXED)

    def __len__(self) -> int:
        return len(self.names)

    def column(self, name: str) -> int:
        return self.index[name]


_ACTION = {a: i for i, a in enumerate(ACTIONS)}
_FAMILY = {f: i for i, f in enumerate(FAMILIES)}
_METHOD = {m: i for i, m in enumerate(METHODS)}
_UA = {u: i for i, u in enumerate(UA_FAMILIES)}
# Offsets of the one-hot blocks inside FIXED.
_O_ACTION = FIXED.index(f"action={ACTIONS[0]}")
_O_FAMILY = FIXED.index(f"family={FAMILIES[0]}")
_O_RSEV = FIXED.index(f"rule_sev={RULE_SEVERITIES[0]}")
_O_EXTRA = FIXED.index(f"x:{EXTRA_SCORES[0]}")
_O_METHOD = FIXED.index(f"method={METHODS[0]}")
_O_STATUS = FIXED.index(f"status={STATUSES[0]}")
_O_PATH = FIXED.index(PATH_FEATURES[0])
_O_UA = FIXED.index(f"ua={UA_FAMILIES[0]}")
_O_HIST = FIXED.index(HISTORY_FEATURES[0])
_O_TAIL = FIXED.index("rule_rarity")


class FeatureExtractor:
    """Turns batches of alerts into feature matrices, updating the streaming state in event-time order."""

    def __init__(self, schema: FeatureSchema, state: ClassifierState | None = None):
        self.schema = schema
        self.state = state if state is not None else ClassifierState()
        n = schema.n_fixed
        self._rule_col = {r: n + i for i, r in enumerate(schema.vocab.rules)}
        n += len(schema.vocab.rules)
        self._cat_col = {c: n + i for i, c in enumerate(schema.vocab.categories)}
        n += len(schema.vocab.categories)
        self._prod_col = {p: n + i for i, p in enumerate(schema.vocab.products)}

    def transform(self, alerts: Sequence[Alert]) -> np.ndarray:
        """Feature matrix (float32, one row per alert, in input order)."""
        X = np.zeros((len(alerts), len(self.schema)), dtype=np.float32)
        order = sorted(range(len(alerts)), key=lambda i: alerts[i].time)
        for i in order:
            self._row(alerts[i], X[i])
        return X

    def _row(self, a: Alert, row: np.ndarray) -> None:
        fixed = [0.0] * self.schema.n_fixed
        rules = a.rules or [a.rule]
        ids = rule_ids(a)
        lvls = a.extra.get("paranoia_levels")
        fixed[0] = a.severity.score / 100.0
        fixed[1] = float(len(rules))
        fixed[2] = float(len(ids))
        fixed[3] = float(len(a.attack))
        fixed[4] = float(min(lvls)) if isinstance(lvls, list) and lvls else 0.0
        fixed[_O_ACTION + _ACTION.get(a.action, 0)] = 1.0
        fam = _FAMILY.get(a.source.family)
        if fam is not None:
            fixed[_O_FAMILY + fam] = 1.0
        for r in rules:
            s = _SEV_MAP.get((r.severity or "").lower())
            if s is not None:
                fixed[_O_RSEV + s] += 1.0
        extra = a.extra
        for k, name in enumerate(EXTRA_SCORES):
            v = extra.get(name)
            if type(v) is int or type(v) is float:
                fixed[_O_EXTRA + k] = float(v)
        http = a.http
        method = (http.method or "none") if http else "none"
        fixed[_O_METHOD + _METHOD.get(method, _METHOD["other"])] = 1.0
        status = http.status if http else None
        fixed[_O_STATUS + (min(max(status // 100, 2), 5) - 2 if status else 4)] = 1.0
        fixed[_O_PATH:_O_PATH + len(PATH_FEATURES)] = path_stats(http.url if http else None)
        o = _O_PATH + len(PATH_FEATURES)
        fixed[o:o + len(ARG_FEATURES)] = arg_stats(arg_text(a))
        fixed[_O_UA + _UA[ua_family(http.user_agent if http else None)]] = 1.0
        t = a.time.timestamp()
        fixed[_O_HIST:_O_HIST + len(HISTORY_FEATURES)] = self._history(a, t, ids)
        st = self.state.tenants
        tr = st.get(a.tenant_id) or TenantRules()
        fixed[_O_TAIL], fixed[_O_TAIL + 1] = tr.observe(t, ids)
        st[a.tenant_id] = tr
        fixed[_O_TAIL + 2] = float(_CRITICALITY.get(a.asset.criticality, 2)) if a.asset else 0.0
        fixed[_O_TAIL + 3] = float(len(a.intel))
        hour = (t % 86400.0) / 3600.0
        fixed[_O_TAIL + 4] = math.sin(hour * math.pi / 12.0)
        fixed[_O_TAIL + 5] = math.cos(hour * math.pi / 12.0)
        fixed[_O_TAIL + 6] = float(a.time.weekday() >= 5)
        row[:self.schema.n_fixed] = fixed
        rc = self._rule_col
        for r in ids:
            j = rc.get(r)
            if j is not None:
                row[j] = 1.0
        cc = self._cat_col
        for r in rules:
            if r.category:
                j = cc.get(r.category)
                if j is not None:
                    row[j] += 1.0
        j = self._prod_col.get(a.source.format or a.source.product)
        if j is not None:
            row[j] = 1.0

    def _history(self, a: Alert, t: float, ids: tuple[str, ...]) -> list[float]:
        key = source_key(a)
        if key is None:
            return [0.0] * (len(HISTORY_FEATURES) - 1) + [math.log1p(GAP_CAP)]
        src = self.state.sources
        h = src.get(key) or SourceHistory()
        out = h.observe(t, ids, target_of(a))
        src[key] = h
        return out


def describe(schema: FeatureSchema) -> dict[str, Any]:
    """The schema as plain data (for the model manifest)."""
    return {"version": schema.version, "n_features": len(schema), "fixed": list(FIXED),
            "vocabulary": schema.vocab.to_dict(), "windows_s": list(WINDOWS)}
