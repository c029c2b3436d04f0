"""Hot reload of use cases from the compacted `mdr.usecases` topic (key: file name, value: YAML text).

Every worker reads the whole topic (one partition, no consumer group) and rebuilds the UseCaseSet from its
base directory plus the topic's files (a topic file replaces the base file of the same name; an empty value removes it).
A file that does not load cleanly is rejected (logged and sent to the dead letters) and the last good set
keeps running.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.rules.usecase import UseCaseSet, iter_rule_files, load_usecases
from pipeline.stream.config import WorkerConfig

log = logging.getLogger("mdr.usecases")
POLL_MS = 500


def build_set(base: Path, overlay: dict[str, str], workdir: Path) -> tuple[UseCaseSet, dict[str, str]]:
    """The set from `base` plus `overlay` files; returns it and the errors of overlay files by name."""
    workdir.mkdir(parents=True, exist_ok=True)
    files = [f for f in iter_rule_files([str(base)]) if Path(f).name not in overlay]
    names: dict[str, str] = {}
    for name, text in sorted(overlay.items()):
        if not text.strip():
            continue
        digest = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
        safe = Path(name).name
        p = workdir / f"{digest}-{safe if safe.endswith(('.yml', '.yaml')) else safe + '.yml'}"
        p.write_text(text, encoding="utf-8")
        files.append(str(p))
        names[str(p)] = name
    ucs = load_usecases(files)
    errors: dict[str, str] = {}
    for e in ucs.errors:
        if e.path in names:
            errors.setdefault(names[e.path], str(e))
    return ucs, errors


class UseCaseFeed:
    """Follows the use-case topic and calls `on_reload(set)` / `on_reject(name, reason, text)`."""

    def __init__(self, cfg: WorkerConfig, on_reload: Callable[[UseCaseSet], None],
                 on_reject: Callable[[str, str, str], Awaitable[None]]):
        self.cfg = cfg
        self.on_reload = on_reload
        self.on_reject = on_reject
        self.good: dict[str, str] = {}  # overlay files of the running set

    async def run(self) -> None:
        topic = self.cfg.topics.usecases
        from pipeline.stream.outage import RETRY_BACKOFF_MS, slow_reconnects

        consumer = AIOKafkaConsumer(bootstrap_servers=self.cfg.bootstrap, enable_auto_commit=False,
                                    group_id=None, auto_offset_reset="earliest", retry_backoff_ms=RETRY_BACKOFF_MS)
        slow_reconnects(consumer._client)  # as the worker's own clients (pipeline/stream/outage.py)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])  # created with one partition (compacted)
            await consumer.seek_to_beginning()
            while True:
                batch = await consumer.getmany(timeout_ms=POLL_MS)
                changes: dict[str, str] = {}
                for records in batch.values():
                    for r in records:
                        if r.key is None:
                            continue
                        changes[r.key.decode("utf-8", "replace")] = (r.value or b"").decode("utf-8", "replace")
                if changes:
                    await self.apply(changes)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("use-case feed stopped")
        finally:
            await consumer.stop()

    async def apply(self, changes: dict[str, str]) -> None:
        """Try the last good overlay plus `changes`; keep the files that load, reject the others."""
        trial = {**self.good, **changes}
        loop = asyncio.get_running_loop()
        work = Path(self.cfg.data_dir) / "usecases-overlay"
        ucs, errors = await loop.run_in_executor(None, build_set, Path(self.cfg.usecases), trial, work)
        if errors:
            for name, reason in errors.items():
                await self.on_reject(name, reason, trial.get(name, ""))
            trial = {k: v for k, v in trial.items() if k not in errors}
            for name in errors:
                if name in self.good:
                    trial[name] = self.good[name]
            ucs, errors = await loop.run_in_executor(None, build_set, Path(self.cfg.usecases), trial, work)
            if errors:  # should not happen: the good set loaded before
                log.error("last good use-case set no longer loads: %s", errors)
                return
        self.good = trial
        self.on_reload(ucs)
