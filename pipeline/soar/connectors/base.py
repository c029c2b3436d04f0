"""What every connector shares: settings with secrets from the environment or a secrets file (never logged),
a timeout, retry with exponential backoff, a bulkhead (bounded concurrency) and a dry-run mode.

Setting values `env:NAME` read the environment (`env?:NAME`: optional); `secret:NAME` reads
`MDR_SECRETS_FILE` (a YAML/JSON mapping, or a directory holding one file per secret). A channel whose
secret is missing is *unavailable*: steps that use it are recorded as skipped, not failed. Secret settings
(references, and the keys in SECRET_KEYS) are registered with pipeline/redact.py, so they are masked in every
form wherever they would show; every text a connector returns also loses its URL query strings (DingTalk and
WeCom carry their tokens there).

Configured secrets never go out in a notification or an external ticket: `Message` and `TicketInfo` redact their
text, and template values are redacted before they are escaped (pipeline/soar/templates.py).

Text for people goes out in the connector's own `markup` (pipeline/textsafe.py): a `Message` or `TicketInfo`
says which markup its text is in; text in another markup (plain text by default) is escaped as a whole, and
titles are always plain text, escaped by the connector.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
import yaml

from pipeline import safeyaml, textsafe
from pipeline.redact import REDACTOR, redact

T = TypeVar("T")
RETRY_STATUS = frozenset({408, 425, 429})
_URL = re.compile(r"(https?://[^\s?#]+)\?[^\s#]*")


SECRET_KEYS = ("secret", "token", "password", "api_key", "key")


def register_secret(key: str, value: Any, is_secret: bool) -> None:
    """Register a setting's value for redaction: a secret reference or a secret key, and the password of
    any URL setting."""
    if is_secret or key in SECRET_KEYS:
        REDACTOR.add(value)
    else:
        REDACTOR.add_url(value)


class ConnectorError(Exception):
    """A failed call. `retryable`: a timeout, a connection error, 5xx or 408/425/429 (worth another try)."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class ChannelUnavailable(Exception):
    """The channel is not configured (unknown name, or a secret / setting it needs is not set)."""


class DryRun(Exception):
    """Raised instead of sending in dry-run mode; carries the (redacted) request that would go out."""

    def __init__(self, request: dict[str, Any]):
        super().__init__("dry run")
        self.request = request


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    backoff: float = 0.5  # seconds before the first retry
    factor: float = 2.0
    max_backoff: float = 60.0

    def delay(self, retry: int) -> float:
        """Wait before retry number `retry` (1-based)."""
        return min(self.max_backoff, self.backoff * self.factor ** (retry - 1))


NO_RETRY = RetryPolicy(attempts=1)


@dataclass(slots=True)
class Message:
    """A notification: a title and a text (markdown-ish), plus what receivers may want to route on."""

    title: str
    text: str
    priority: str = "P3"
    tenant: str = ""
    incident_id: str = ""
    ticket_id: int | None = None
    kind: str = "incident"  # incident | escalation | approval | update
    markup: str = "raw"  # the markup `text` is written in (pipeline/textsafe.py); raw: plain, unescaped

    def __post_init__(self) -> None:  # a configured secret that record text carried never leaves in a notice
        self.title, self.text = redact(self.title), redact(self.text)


@dataclass(slots=True)
class TicketInfo:
    """What an external ticket system (TheHive, Jira) gets about a ticket."""

    ticket_id: int
    incident_id: str
    tenant: str
    title: str
    text: str
    priority: str
    category: str
    created_ms: int
    tags: list[str] = field(default_factory=list)
    observables: list[tuple[str, str]] = field(default_factory=list)  # (data type, value)
    markup: str = "raw"  # the markup `text` is written in

    def __post_init__(self) -> None:  # nor in an external ticket
        self.title, self.text, self.tags = redact(self.title), redact(self.text), [redact(t) for t in self.tags]
        self.observables = [(kind, redact(v)) for kind, v in self.observables]


@dataclass(slots=True)
class Request:
    method: str
    url: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


class Secrets:
    """Resolves `env:` and `secret:` references."""

    def __init__(self, path: str | Path | None = None):
        self.path = (
            Path(path)
            if path
            else (Path(os.environ["MDR_SECRETS_FILE"]) if os.environ.get("MDR_SECRETS_FILE") else None)
        )
        self._data: dict[str, str] | None = None

    def _file(self) -> dict[str, str]:
        if self._data is None:
            self._data = {}
            if self.path is not None and self.path.is_dir():
                self._data = {p.name: p.read_text().strip() for p in self.path.iterdir() if p.is_file()}
            elif self.path is not None and self.path.is_file():
                loaded = safeyaml.load(self.path.read_text()) or {}
                self._data = {str(k): str(v) for k, v in loaded.items()}
            for v in self._data.values():  # every value of the secrets file is a secret
                REDACTOR.add(v)
        return self._data

    def register(self) -> None:
        """Make every value of the secrets file known to the redaction now, not only those a channel names (a
        secret an operator keeps there for something else still never shows). A file that cannot be read is
        reported where a channel resolves a secret from it."""
        try:
            self._file()
        except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):  # AttributeError: not a mapping
            self._data = None

    def resolve(self, value: Any) -> tuple[Any, bool]:
        """(value, is_secret). Raises ChannelUnavailable when a reference cannot be resolved."""
        if not isinstance(value, str):
            return value, False
        if value.startswith("env?:"):  # optional: unset means "no value"
            return os.environ.get(value[5:]) or None, True
        if value.startswith("env:"):
            v = os.environ.get(value[4:])
            if not v:
                raise ChannelUnavailable(f"environment variable {value[4:]} is not set")
            return v, True
        if value.startswith("secret:"):
            v = self._file().get(value[7:])
            if not v:
                where = self.path or "MDR_SECRETS_FILE (unset)"
                raise ChannelUnavailable(f"secret {value[7:]!r} not found in {where}")
            return v, True
        return value, False


class Connector:
    """Base class. Subclasses set `type`, `required` settings and implement the operations they support."""

    type: ClassVar[str]
    required: ClassVar[tuple[str, ...]] = ()
    markup: ClassVar[str] = "raw"  # what the receiving system renders text as (pipeline/textsafe.py)

    def __init__(self, name: str, settings: dict[str, Any], *, secrets: Secrets | None = None, dry_run: bool = False):
        self.name = name
        self.dry_run = dry_run
        secrets = secrets or Secrets()
        self.settings: dict[str, Any] = {}
        for k, v in settings.items():
            val, is_secret = secrets.resolve(v)
            register_secret(k, val, is_secret)
            self.settings[k] = val
        missing = [k for k in self.required if not self.settings.get(k)]
        if missing:
            raise ChannelUnavailable(f"channel {name}: missing setting(s) {', '.join(missing)}")
        self.timeout = float(self.settings.get("timeout", 10.0))
        r = self.settings.get("retry") or {}
        self.retry = RetryPolicy(**{k: r[k] for k in ("attempts", "backoff", "factor", "max_backoff") if k in r})
        self.slots = threading.BoundedSemaphore(int(self.settings.get("max_concurrency", 4)))

    # ---- operations (override what the connector supports) ------------------------------------------
    def notify(self, msg: Message, *, timeout: float | None = None, retry: RetryPolicy | None = None) -> dict[str, Any]:
        raise ConnectorError(f"{self.type} cannot notify", retryable=False)

    def open_ticket(
        self, t: TicketInfo, *, timeout: float | None = None, retry: RetryPolicy | None = None
    ) -> dict[str, Any]:
        raise ConnectorError(f"{self.type} cannot open tickets", retryable=False)

    def update_ticket(
        self,
        ref: dict[str, Any],
        text: str,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        raise ConnectorError(f"{self.type} cannot update tickets", retryable=False)

    def escalate_ticket(
        self,
        ref: dict[str, Any],
        text: str,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        raise ConnectorError(f"{self.type} cannot escalate tickets", retryable=False)

    def block_ip(
        self,
        ip: str,
        *,
        duration: float,
        reason: str,
        ref: str,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        raise ConnectorError(f"{self.type} cannot block addresses", retryable=False)

    def isolate_host(
        self,
        host: str,
        *,
        reason: str,
        ref: str,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        raise ConnectorError(f"{self.type} cannot isolate hosts", retryable=False)

    # ---- shared machinery ---------------------------------------------------------------------------
    def redact(self, text: str) -> str:
        return _URL.sub(r"\1?***", redact(text))

    def esc(self, value: str) -> str:
        """A plain value (a title, a name) in this connector's markup."""
        return textsafe.escape(self.markup, value)

    def body(self, text: str, markup: str) -> str:
        """`text`, written in `markup`, as this connector's markup: as is when they agree, else escaped."""
        return text if markup == self.markup else textsafe.escape(self.markup, text, multiline=True)

    def with_retry(self, fn: Callable[[], T], retry: RetryPolicy | None) -> T:
        """Call `fn` until it succeeds, fails for good, or the attempts run out (sleeping the backoff)."""
        policy = retry or self.retry
        for attempt in range(1, policy.attempts + 1):
            try:
                return fn()
            except ConnectorError as e:
                if not e.retryable or attempt == policy.attempts:
                    raise
                time.sleep(policy.delay(attempt))
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Release connections."""


class HttpConnector(Connector):
    """A connector speaking HTTP(S) through one shared httpx client."""

    def __init__(self, name: str, settings: dict[str, Any], **kw: Any):
        super().__init__(name, settings, **kw)
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                verify: Any = self.settings.get("ca_file") or self.settings.get("verify", True)
                self._client = httpx.Client(
                    timeout=self.timeout, verify=verify, headers={"User-Agent": "mdr-pipeline-soar/0.1"}
                )
            return self._client

    def endpoint(self, path: str) -> str:
        """`path` below the `url` setting."""
        return self.settings["url"].rstrip("/") + path

    def describe(self, req: Request) -> dict[str, Any]:
        body = req.json if req.json is not None else (req.content.decode("utf-8", "replace") if req.content else None)
        url = req.url + ("?" + "&".join(f"{k}=..." for k in req.params) if req.params else "")
        return {
            "method": req.method,
            "url": self.redact(url),
            "body": json.loads(self.redact(json.dumps(body, ensure_ascii=False))) if body else None,
        }

    def preview(self, req: Request) -> None:
        """In dry-run mode, stop here and report `req`."""
        if self.dry_run:
            raise DryRun(self.describe(req))

    def send(self, req: Request, *, timeout: float | None = None, retry: RetryPolicy | None = None) -> httpx.Response:
        """Send with retry; returns the 2xx/3xx response or raises ConnectorError (redacted)."""
        self.preview(req)
        return self.with_retry(lambda: self._once(req, timeout or self.timeout), retry)

    def _once(self, req: Request, timeout: float) -> httpx.Response:
        where = f"{req.method} {self.redact(req.url)}"
        # httpx would replace the URL's own query (DingTalk's access_token) with `params`: merge instead
        url = str(httpx.URL(req.url).copy_merge_params(req.params)) if req.params else req.url
        try:
            r = self.client.request(
                req.method, url, json=req.json, content=req.content, headers=req.headers, timeout=timeout
            )
        except httpx.TimeoutException:
            raise ConnectorError(f"{where}: timed out after {timeout:g}s", retryable=True) from None
        except httpx.TransportError as e:
            raise ConnectorError(f"{where}: {self.redact(type(e).__name__ + ': ' + str(e))}", retryable=True) from None
        if r.status_code >= 400:
            retryable = r.status_code >= 500 or r.status_code in RETRY_STATUS
            raise ConnectorError(
                f"{where}: HTTP {r.status_code} {self.redact(r.text[:200])}",
                retryable=retryable,
                status=r.status_code,
            )
        return r

    def errcode_answer(self, r: httpx.Response, where: str, retry_codes: frozenset[int]) -> dict[str, Any]:
        """A chat robot's answer (DingTalk, WeCom): `{"errcode": 0}` is success, `retry_codes` are retried."""
        data = json_or_error(r, where)
        code = data.get("errcode", 0)
        if code != 0:
            raise ConnectorError(
                f"{where} errcode {code}: {self.redact(str(data.get('errmsg', '')))}",
                retryable=code in retry_codes,
            )
        return {"http_status": r.status_code}

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def json_or_error(r: httpx.Response, where: str) -> dict[str, Any]:
    try:
        data = r.json()
    except ValueError:
        raise ConnectorError(f"{where}: answer is not JSON", retryable=False) from None
    if not isinstance(data, dict):
        raise ConnectorError(f"{where}: unexpected answer", retryable=False)
    return data
