"""Live updates: one poller per console process watches the store for tickets written since it last looked
(by the worker, `mdr replay`, the CLI or another console) and hands each subscriber (a server-sent-event
stream) the ids of the changed tickets of the tenants that subscriber may see.

The store is the source because it is where a ticket is committed: whatever writes it, the queue shows it
once it is readable. Writers stamp `updated_at` with their own clock and commit in any order, so the poller
looks back `OVERLAP` seconds each time and drops the (id, updated_at) pairs it already announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipeline.console.auth import Principal
from pipeline.console.queries import changed_since
from pipeline.soar.models import utcnow

log = logging.getLogger("mdr.console")
OVERLAP = timedelta(seconds=5)
PAGE = 1000


@dataclass(eq=False)
class Subscriber:
    who: Principal
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[list[int]] = field(default_factory=lambda: asyncio.Queue(maxsize=100))

    def offer(self, ids: list[int]) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a stalled client: it reloads on its next event anyway
            self.queue.put_nowait(ids)


class ChangeFeed:
    def __init__(self, store: Any, interval: float = 0.5):
        self.store = store
        self.interval = interval
        self._subs: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._since: datetime = utcnow()
        self._seen: dict[tuple[int, datetime], None] = {}  # (ticket id, updated_at) announced
        self.polls = 0

    def subscribe(self, who: Principal) -> Subscriber:
        sub = Subscriber(who, asyncio.get_running_loop())
        with self._lock:
            if not self._subs:  # (re)start watching from now
                self._since = utcnow() - OVERLAP
            self._subs.add(sub)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="console-feed", daemon=True)
                self._thread.start()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            with self._lock:
                idle = not self._subs
            if not idle:
                try:
                    self.poll()
                except Exception as e:  # the store is down for a moment: try again next tick
                    log.warning("change feed: %s", e)
            self._stop.wait(max(0.05, self.interval - (time.monotonic() - t0)))

    def poll(self) -> int:
        """Look for changed tickets once and notify the subscribers; returns how many changes were new."""
        with self.store.tx() as s:
            rows = changed_since(s, self._since, PAGE)
        self.polls += 1
        fresh = [(tid, tenant) for tid, tenant, at in rows if (tid, at) not in self._seen]
        self._seen.update(((tid, at), None) for tid, _, at in rows)
        if rows:  # look back for late commits, unless a full page must be got past
            self._since = max(self._since, rows[-1][2] - (OVERLAP if len(rows) < PAGE else timedelta(0)))
            self._seen = {k: None for k in self._seen if k[1] >= self._since}
        if not fresh:
            return 0
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            ids = sorted({tid for tid, tenant in fresh if sub.who.sees(tenant)})
            if ids:
                sub.loop.call_soon_threadsafe(sub.offer, ids)
        return len(fresh)
