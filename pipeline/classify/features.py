"""Feature extraction for the noise classifier (feature schema version `FEATURE_VERSION`).

One row of float32 per alert, product-agnostic (fields a product lacks are 0). The fixed columns (`FIXED`):

- rules: `n_rules`, `n_distinct_rules`, `n_techniques` (ATT&CK ids), `min_paranoia_level` (CRS), `rule_sev=*`
  counts of the alert's rules by severity (CRS CRITICAL/ERROR/WARNING/NOTICE, Suricata 1..4, plain labels).
- `severity` (the alert's 0..100 score / 100), `action=*` and `family=*` one-hot.
- product scores from `extra` (`x:anomaly_score`, the CRS per-category and per-paranoia-level scores), and what
  carries over to a rule family never seen: the highest per-category score (`family_score_max`), how many
  categories scored (`families_scored`) and how many rule families the alert's rules span (`n_rule_families`).
- HTTP: `method=*`, `status=*` one-hot; path shape (length, depth, script / static extension, characters outside
  `[A-Za-z0-9/._~-]`, `..`, `%`); argument statistics (`args_*`) of the query string or, without one, of the
  `ARGS:name=value` strings the product reported as matched data (ModSecurity POST bodies), cut at `ARG_MAX`
  bytes and percent-decoded once (`+` is a space): length, parameter count, Shannon entropy (bits per byte),
  counts of quotes, angle brackets, parentheses, `;`, comment markers (`--`, `/*`, `#`), `=`, spaces, slashes,
  dots, left-over `%` (double encoding), digit / upper-case / non-alphanumeric shares, non-ASCII bytes.
- `ua=*`: user-agent family (browser, mobile, script, scanner, bot, empty, other).
- source history (`src_*`, see `pipeline.classify.history`): alerts, distinct primary rule ids and distinct
  targets (host + path) of the same tenant + source (src ip, else user, else host name) in the last 5 min and
  1 h, and the gap since its previous alert.
- `rule_rarity` / `rule_rarity_max`: how rare the primary rule / the rarest rule of the alert is for the tenant.
- content (`pipeline.classify.content`): token classes of injection languages and hashed character 3-grams of
  the query string and matched values, which carry over to rules never seen in training.
- context: `asset_criticality` (0 no asset, 1 low .. 4 critical), `intel_hits`, `hour_sin` / `hour_cos` (UTC
  hour of day), `weekend`.

Learned columns (`Vocabulary`, stored with the model): `rule=<id>` and `cat=<category>` (how many of the
alert's rule matches have this id / category), `product=<format>`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.classify.content import CONTENT_FEATURES, content_matrix, content_of
from pipeline.classify.generalize import rule_family
from pipeline.classify.history import (
    GAP_CAP,
    HISTORY_FEATURES,
    NO_HISTORY,
    WINDOWS,
    ClassifierState,
    SourceHistory,
    TenantRules,
)
from pipeline.schema import ACTIONS, FAMILIES, Alert, Rule

FEATURE_VERSION = "3"
ARG_MAX = 2048
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
PATH_FEATURES = ("path_len", "path_depth", "path_ext_script", "path_ext_static", "path_special", "path_dotdot",
                 "path_pct")
ARG_FEATURES = (
    "args_len", "args_n", "args_entropy", "args_quote", "args_angle", "args_paren", "args_semicolon",
    "args_comment", "args_eq", "args_space", "args_slash", "args_dot", "args_pct", "args_digit_share",
    "args_upper_share", "args_special_share", "args_nonascii",
)
# Per-alert numeric columns, filled in this order by `FeatureExtractor._dense`.
DENSE = (
    "severity", "n_rules", "n_distinct_rules", "n_techniques", "min_paranoia_level",
    *(f"x:{k}" for k in EXTRA_SCORES), "family_score_max", "families_scored", "n_rule_families",
    *PATH_FEATURES, *HISTORY_FEATURES,
    "rule_rarity", "rule_rarity_max", "asset_criticality", "intel_hits", "hour_sin", "hour_cos", "weekend",
)
ONE_HOT = (
    tuple(f"action={a}" for a in ACTIONS) + tuple(f"family={f}" for f in FAMILIES)
    + tuple(f"method={m}" for m in METHODS) + tuple(f"status={s}" for s in STATUSES)
    + tuple(f"ua={u}" for u in UA_FAMILIES) + tuple(f"rule_sev={s}" for s in RULE_SEVERITIES)
)
FIXED: tuple[str, ...] = DENSE + ARG_FEATURES + CONTENT_FEATURES + ONE_HOT
GROUPS: dict[str, frozenset[str]] = {
    "history": frozenset(HISTORY_FEATURES),
    "time": frozenset(("hour_sin", "hour_cos", "weekend")),
    "content": frozenset(CONTENT_FEATURES),
}
# Groups of learned columns, by name prefix: `rules` (rule ids), `categories` (rule categories).
PREFIX_GROUPS: dict[str, str] = {"rules": "rule=", "categories": "cat="}

_SEV = {
    "emergency": 0, "alert": 0, "critical": 0, "error": 1, "high": 1, "1": 1, "warning": 2, "medium": 2, "2": 2,
    "notice": 3, "low": 3, "3": 3, "info": 4, "informational": 4, "debug": 4, "4": 4,
}
_SEV.update({k.upper(): v for k, v in _SEV.items()})
_CRITICALITY = {"low": 1, "medium": 2, "high": 3, "critical": 4}
_SCRIPT_EXT = frozenset(("php", "asp", "aspx", "jsp", "cgi", "pl", "py", "sh", "do", "action", "exe", "dll"))
_STATIC_EXT = frozenset(("html", "htm", "css", "js", "png", "jpg", "jpeg", "gif", "svg", "ico", "txt", "xml",
                         "json", "woff", "woff2", "pdf", "map"))
_PATH_OK = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-~"
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
    if u.startswith(("mozilla/", "opera")):
        return "mobile" if any(s in u for s in _MOBILE) else "browser"
    if any(s in u for s in _SCRIPTS):
        return "script"
    return "other"


def arg_bytes(a: Alert) -> bytes:
    """The request arguments, still encoded: the query string, else the product's matched `ARGS:` values."""
    _, q, query = a.http.url.partition("?") if a.http is not None and a.http.url else ("", "", "")
    return _args(q, query, a.extra)


def _args(q: str, query: str, extra: dict[str, Any]) -> bytes:
    if q:
        return query.encode("utf-8", "surrogateescape")[:ARG_MAX]
    data = extra.get("matched_data")
    if isinstance(data, list):
        vals = [d.partition("=")[2] for d in data if isinstance(d, str) and d.startswith("ARGS:")]
        return "&".join(vals).encode("utf-8", "surrogateescape")[:ARG_MAX]
    return b""


_HEX = np.full(256, -1, dtype=np.int16)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i


def _percent_decode(buf: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One level of percent-decoding of concatenated segments (`+` -> space); escapes never span segments."""
    out = buf.copy()
    out[buf == 43] = 32
    if buf.size < 3:
        return out, seg
    pct = np.flatnonzero(buf[:-2] == 37)
    h1, h2 = _HEX[buf[pct + 1]], _HEX[buf[pct + 2]]
    ok = (h1 >= 0) & (h2 >= 0) & (seg[pct] == seg[pct + 2])
    pct = pct[ok]
    out[pct] = (h1[ok] * 16 + h2[ok]).astype(np.uint8)
    keep = np.ones(buf.size, dtype=bool)
    keep[pct + 1] = False
    keep[pct + 2] = False
    return out[keep], seg[keep]


def _class_table() -> np.ndarray:
    """Byte -> character class (disjoint classes, `_CLASSES` order; the last one is "other")."""
    lut = np.full(256, len(_CLASSES) - 1, dtype=np.int64)
    for k, chars in enumerate(_CLASSES[:-2]):
        lut[list(chars.encode())] = k
    lut[128:] = len(_CLASSES) - 2
    return lut


_CLASSES = ("&", "'\"", "<>", "()", ";", "#", "=", " ", "/\\", ".", "%", "0123456789",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "non-ascii", "other")
_CLASS_OF = _class_table()
_CLOG = np.concatenate(([0.0], np.arange(1, ARG_MAX + 1) * np.log2(np.arange(1, ARG_MAX + 1))))  # c * log2(c)
_NC = len(_CLASSES)
# ARG_FEATURES columns that are plain class counts: (class index, feature index).
_CLASS_TO_ARG = ((1, 3), (2, 4), (3, 5), (4, 6), (6, 8), (7, 9), (8, 10), (9, 11), (10, 12), (14, 16))


def arg_matrix(raws: Sequence[bytes]) -> np.ndarray:
    """`ARG_FEATURES` for a batch of argument strings, computed on byte histograms (vectorized)."""
    n = len(raws)
    out = np.zeros((n, len(ARG_FEATURES)), dtype=np.float64)
    if not n:
        return out
    lens = np.fromiter(map(len, raws), dtype=np.int64, count=n)
    buf = np.frombuffer(b"".join(raws), dtype=np.uint8)
    seg = np.repeat(np.arange(n, dtype=np.int64), lens)
    dec, seg = _percent_decode(buf, seg)
    hlog = _CLOG[np.bincount(seg * 256 + dec, minlength=n * 256)].reshape(n, 256).sum(axis=1)
    cls = np.bincount(seg * _NC + _CLASS_OF[dec], minlength=n * _NC).reshape(n, _NC).astype(np.float64)
    length = cls.sum(axis=1)
    has = length > 0
    safe = np.where(has, length, 1.0)
    out[:, 0] = length
    out[:, 1] = np.where(has, cls[:, 0] + 1, 0.0)
    out[:, 2] = np.where(has, np.log2(safe) - hlog / safe, 0.0)
    for c, k in _CLASS_TO_ARG:
        out[:, k] = cls[:, c]
    pair = (seg[:-1] == seg[1:]) & (((dec[:-1] == 45) & (dec[1:] == 45)) | ((dec[:-1] == 47) & (dec[1:] == 42)))
    out[:, 7] = cls[:, 5] + np.bincount(seg[:-1][pair], minlength=n)
    out[:, 13] = cls[:, 11] / safe
    out[:, 14] = cls[:, 12] / safe
    out[:, 15] = (length - cls[:, 11] - cls[:, 12] - cls[:, 13]) / safe
    return out


def path_stats(path: str) -> list[float]:
    """Shape of a URL path, in `PATH_FEATURES` order."""
    if not path:
        return [0.0] * len(PATH_FEATURES)
    last = path.rpartition("/")[2]
    ext = last.rpartition(".")[2].lower() if "." in last else ""
    pb = path.encode("utf-8", "surrogateescape")
    return [float(len(path)), float(path.count("/")), float(ext in _SCRIPT_EXT), float(ext in _STATIC_EXT),
            float(len(pb.translate(None, _PATH_OK))), float(path.count("..")), float(path.count("%"))]


def source_key(a: Alert) -> str | None:
    """History key: tenant + source (src ip, else user, else host name); None when the alert has none."""
    s = a.src.ip or a.user or (a.host.name if a.host else None)
    return f"{a.tenant_id}{SEP}{s}" if s else None


def target_of(a: Alert, path: str) -> str:
    """What the alert is about: destination host (or ip) + URL path."""
    http = a.http
    where = a.dst.hostname or (http.host if http else None) or a.dst.ip or (a.host.name if a.host else "") or ""
    return where + path


def rule_ids(a: Alert) -> tuple[str, ...]:
    """Distinct rule ids of the alert, primary rule first."""
    ids = [a.rule.id] if a.rule.id else []
    ids += [r.id for r in a.rules if r.id]
    return tuple(dict.fromkeys(ids))


@dataclass(slots=True)
class Vocabulary:
    """Learned parts of the schema: rule ids, rule categories and product formats seen in training."""

    rules: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)

    @classmethod
    def learn(cls, alerts: Sequence[Alert], min_count: int = 5, max_rules: int = 300) -> Vocabulary:
        """Rule ids, categories and products seen on at least `min_count` alerts (at most `max_rules` rules)."""
        rules: Counter[str] = Counter()
        cats: Counter[str] = Counter()
        prods: Counter[str] = Counter()
        for a in alerts:
            rules.update(rule_ids(a))
            cats.update({r.category for r in (*a.rules, a.rule) if r.category})
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

    def __len__(self) -> int:
        return len(self.names)

    def describe(self) -> dict[str, Any]:
        """The schema as plain data (for the model manifest)."""
        return {"version": self.version, "n_features": len(self), "fixed": list(FIXED),
                "vocabulary": self.vocab.to_dict(), "history_windows_s": list(WINDOWS)}


_O_ARGS = len(DENSE)
_O_CONTENT = _O_ARGS + len(ARG_FEATURES)
_NO_PATH = [0.0] * len(PATH_FEATURES)
_ZEROS = (0.0,) * len(EXTRA_SCORES)
FAMILY_SCORES = EXTRA_SCORES[1:9]  # the CRS per-category scores (sql_injection_score .. session_fixation_score)
_O_FAMILY_SCORES = DENSE.index(f"x:{FAMILY_SCORES[0]}")  # their position in the `DENSE` row


class FeatureExtractor:
    """Turns batches of alerts into feature matrices, updating the streaming state in event-time order."""

    def __init__(self, schema: FeatureSchema, state: ClassifierState | None = None):
        self.schema = schema
        self.state = state if state is not None else ClassifierState()
        ix = schema.index
        self._action = {a: ix[f"action={a}"] for a in ACTIONS}
        self._family = {f: ix[f"family={f}"] for f in FAMILIES}
        self._method = {m: ix[f"method={m}"] for m in METHODS}
        self._status = [ix[f"status={s}"] for s in STATUSES]
        self._ua_col = {u: ix[f"ua={u}"] for u in UA_FAMILIES}
        self._sev = {k: ix[f"rule_sev={RULE_SEVERITIES[v]}"] for k, v in _SEV.items()}
        self._rule = {r: ix[f"rule={r}"] for r in schema.vocab.rules}
        self._cat = {c: ix[f"cat={c}"] for c in schema.vocab.categories}
        self._product = {p: ix[f"product={p}"] for p in schema.vocab.products}
        self.newest = float("-inf")  # latest event time seen (for expiring idle sources)
        self._ua_cache: dict[str | None, int] = {}
        self._rule_cols: dict[str, tuple[str | None, str | None, tuple[int, ...]]] = {}
        self._path_cache: dict[str, list[float]] = {}
        self._families: dict[str, str | None] = {}  # rule id -> rule family

    def transform(self, alerts: Sequence[Alert], record: Sequence[bool] | None = None) -> np.ndarray:
        """Feature matrix (float32, one row per alert, in input order); alerts are visited in time order.

        `record[i]` false: alert i is scored against the state but leaves no trace in it (training uses this
        for alerts the core's dedup would merge, so the history matches what the core's classifier sees)."""
        n, width = len(alerts), len(self.schema)
        order = sorted(range(n), key=lambda i: alerts[i].time)
        if n:
            self.newest = max(self.newest, alerts[order[-1]].time.timestamp())
        dense: list[float] = []
        cols: list[int] = []  # columns that get +1, alert after alert (in `order`)
        per: list[int] = []  # how many of `cols` each alert added
        args: list[bytes] = []  # in `order`
        for i in order:
            k = len(cols)
            dense += self._alert(alerts[i], True if record is None else record[i], cols, args)
            per.append(len(cols) - k)
        contents = [content_of(alerts[i]) for i in order]
        rows = np.asarray(order, dtype=np.int64)
        flat = np.repeat(rows * width, per) + np.asarray(cols, dtype=np.int64)
        X = np.bincount(flat, minlength=n * width).astype(np.float32).reshape(n, width)
        X[rows, :len(DENSE)] = np.asarray(dense, dtype=np.float64).reshape(n, len(DENSE))
        X[rows, _O_ARGS:_O_CONTENT] = arg_matrix(args)
        X[rows, _O_CONTENT:_O_CONTENT + len(CONTENT_FEATURES)] = content_matrix(contents)
        return X

    def _alert(self, a: Alert, rec: bool, cols: list[int], args: list[bytes]) -> list[float]:
        """The `DENSE` values of one alert; appends the columns of its one-hot, count and vocabulary features
        (each adds 1) to `cols` and its raw arguments to `args`. Updates the source history and the tenant
        rule frequencies."""
        http, extra = a.http, a.extra
        get, ids = self._rule_cols.get, [a.rule.id] if a.rule.id else []
        rules = a.rules or (a.rule,)
        for r in rules:
            rid = r.id
            e = get(rid)
            if e is None or e[0] != r.severity or e[1] != r.category:  # new (rule id, severity, category)
                e = self._rule_columns(rid, r.severity, r.category)
            cols += e[2]
            ids.append(rid)
        uniq = tuple(dict.fromkeys(ids))
        cols.append(self._action.get(a.action, self._action["detected"]))
        j = self._family.get(a.source.family)
        if j is not None:
            cols.append(j)
        j = self._product.get(a.source.format or a.source.product)
        if j is not None:
            cols.append(j)
        if http is not None:
            cols.append(self._method.get(http.method or "none", self._method["other"]))
            status = http.status
            cols.append(self._status[min(max(status // 100, 2), 5) - 2 if status else 4])
            cols.append(self._ua(http.user_agent))
            upath, q, query = http.url.partition("?") if http.url else ("", "", "")
            path = self._path(upath)
        else:
            cols += (self._method["none"], self._status[4], self._ua(None))
            upath, q, query, path = "", "", "", _NO_PATH
        args.append(_args(q, query, extra))
        lvls = extra.get("paranoia_levels")
        t = a.time.timestamp()
        row = [a.severity.score / 100.0, float(len(rules)), float(len(uniq)), float(len(a.attack)),
               float(min(lvls)) if isinstance(lvls, list) and lvls else 0.0]
        try:
            row += map(float, map(extra.get, EXTRA_SCORES, _ZEROS))
        except (TypeError, ValueError):  # a product put something else under one of these keys
            del row[5:]
            row += (float(v) if isinstance(v, int | float) else 0.0 for v in map(extra.get, EXTRA_SCORES))
        fam = row[_O_FAMILY_SCORES:_O_FAMILY_SCORES + len(FAMILY_SCORES)]
        row += (max(fam), float(sum(v > 0 for v in fam)),
                float(len({f for f in map(self._rule_family, rules) if f is not None})))
        row += path
        row += self._history(a, t, uniq[0] if uniq else "", upath, rec)
        tenants = self.state.tenants
        tr = tenants.get(a.tenant_id) or TenantRules()
        row += tr.observe(t, uniq, rec)
        tenants[a.tenant_id] = tr
        hour = (t % 86400.0) * (math.pi / 43200.0)
        row += (float(_CRITICALITY.get(a.asset.criticality, 2)) if a.asset else 0.0, float(len(a.intel)),
                math.sin(hour), math.cos(hour), float(a.time.weekday() >= 5))
        return row

    def _rule_columns(self, rid: str, sev: str | None, cat: str | None
                      ) -> tuple[str | None, str | None, tuple[int, ...]]:
        """Columns a rule match adds to (severity count, category count, rule id), cached by rule id with the
        severity and category they were computed for (a change recomputes them)."""
        cand = (self._sev.get(sev) if sev else None, self._cat.get(cat) if cat else None, self._rule.get(rid))
        e = self._rule_cols[rid] = (sev, cat, tuple(j for j in cand if j is not None))
        return e

    def _rule_family(self, r: Rule) -> str | None:
        f = self._families.get(r.id, "")
        if f == "":
            if len(self._families) > 8192:
                self._families.clear()
            f = self._families[r.id] = rule_family(r)
        return f

    def _path(self, path: str) -> list[float]:
        v = self._path_cache.get(path)
        if v is None:
            if len(self._path_cache) > 8192:
                self._path_cache.clear()
            v = self._path_cache[path] = path_stats(path)
        return v

    def _ua(self, ua: str | None) -> int:
        j = self._ua_cache.get(ua)
        if j is None:
            if len(self._ua_cache) > 4096:
                self._ua_cache.clear()
            j = self._ua_cache[ua] = self._ua_col[ua_family(ua)]
        return j

    def _history(self, a: Alert, t: float, rule: str, path: str, rec: bool) -> list[float]:
        key = source_key(a)
        if key is None:
            return NO_HISTORY
        sources = self.state.sources
        h = sources.get(key) or SourceHistory()
        out = h.observe(t, rule, target_of(a, path), rec)
        sources[key] = h
        return out


__all__ = ["FEATURE_VERSION", "GAP_CAP", "GROUPS", "PREFIX_GROUPS", "ClassifierState", "FeatureExtractor",
           "FeatureSchema", "Vocabulary", "arg_matrix", "ua_family"]
