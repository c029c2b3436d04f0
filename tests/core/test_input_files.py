"""Hostile input files (issue 13 §8): links, loops, special files, huge lines and gzip bombs end as counted
skips or small dead letters; a replay never hangs, aborts or holds a whole over-long input in memory."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import tracemalloc
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.normalize.reader import Limits, read_records, walk
from pipeline.normalize.stage import DLQ_PREFIX_BYTES, MAX_RECORD_BYTES, NormalizeResult, NormalizeStage

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "samples" / "lab-1"
SSHD = LAB / "host" / "sshd_auth.log"
T0 = datetime(2026, 11, 24, tzinfo=UTC)


def replay(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, ["replay", *map(str, args)])
    return r.exit_code, r.output


def dlq(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "dlq.jsonl").read_text().splitlines()]


def summary(output: str, row: str) -> int:
    line = next(ln for ln in output.splitlines() if f"│ {row} " in ln)
    return int(line.split("│")[2])


def normalize(path: Path, limits: Limits = Limits()) -> NormalizeResult:
    stage, res = NormalizeStage(), NormalizeResult()
    for rec, hint in read_records(str(path), "t", None, T0, limits=limits):
        stage.process(rec, hint, res)
    stage.flush(res)
    return res


# ---- links and special files ----------------------------------------------------------------------------
def test_symlinked_subdirectory_is_read(tmp_path: Path) -> None:
    """The probe's 3,670 WAF records behind a linked directory were ignored with exit 0."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "waf").symlink_to(LAB / "waf", target_is_directory=True)
    code, output = replay(d, "--tenant", "t", "--out", tmp_path / "a")
    assert code == 0, output
    code, direct = replay(LAB / "waf", "--tenant", "t", "--out", tmp_path / "b")
    assert code == 0 and summary(output, "records read") == summary(direct, "records read") > 3000
    ids = [[json.loads(x)["alert_id"] for x in (tmp_path / o / "alerts.jsonl").read_text().splitlines()]
           for o in ("a", "b")]
    assert ids[0] == ids[1] and ids[0]


def test_link_loops_dangling_links_and_duplicates_are_counted_skips(tmp_path: Path) -> None:
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    shutil.copy(SSHD, d / "sub" / "auth.log")
    (d / "sub" / "loop").symlink_to("..", target_is_directory=True)  # back to an ancestor
    (d / "self").symlink_to("self")  # ELOOP
    (d / "gone").symlink_to(tmp_path / "nowhere")
    (d / "again").symlink_to(d / "sub", target_is_directory=True)  # the same directory twice
    (d / "auth-copy.log").symlink_to(d / "sub" / "auth.log")  # the same file twice
    found = walk([str(d)])
    reasons = {str(Path(s.path).relative_to(d)): s.reason for s in found.skipped}
    assert reasons == {"gone": "dangling link", "self": "link loop", "again/auth.log": "duplicate",
                       "again/loop": "link loop", "sub": "duplicate"}  # names in order: again/ before sub/
    assert found.files == [str(d / "auth-copy.log")]  # one sshd log, read once
    code, output = replay(d, "--tenant", "t", "--out", tmp_path / "o")
    assert code == 0 and "Traceback" not in output, output
    assert summary(output, "paths skipped") == len(found.skipped)
    assert summary(output, "records read") == len(SSHD.read_text().splitlines())
    assert "skipped " + str(d / "gone") + ": dangling link" in output


def test_named_link_loop_is_one_line_usage_error(tmp_path: Path) -> None:
    (tmp_path / "self").symlink_to("self")
    code, output = replay(tmp_path / "self", "--out", tmp_path / "o")
    assert code == 2 and output.count("\n") == 1 and "Too many levels of symbolic links" in output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_in_a_directory_is_skipped_not_waited_on(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(SSHD, d / "auth.log")
    os.mkfifo(d / "pipe")
    p = subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", str(d), "--tenant", "t", "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"skipped {d / 'pipe'}: special file (FIFO)" in p.stderr
    assert summary(p.stderr, "paths skipped") == 1


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_named_explicitly_is_read(tmp_path: Path) -> None:
    """`mdr replay <(zcat day.gz)` names a pipe: that is read."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(SSHD.read_bytes()), daemon=True)
    writer.start()
    res = normalize(fifo)
    writer.join(10)
    assert res.records == len(SSHD.read_text().splitlines()) and res.alerts and not res.dead


# ---- bounded reads ---------------------------------------------------------------------------------------
def test_huge_line_is_never_held_and_its_dead_letter_is_small(tmp_path: Path) -> None:
    """A 20 MB line gave a 40 MB dead-letter file; now: a prefix, the length and the sha256."""
    f = tmp_path / "big.log"
    line = b"A" * 20_000_000
    good = SSHD.read_bytes().splitlines()[2]
    f.write_bytes(good + b"\n" + line + b"\r\n" + good + b"\n")
    tracemalloc.start()
    res = normalize(f)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * MAX_RECORD_BYTES, peak  # a few record-sized buffers, never the 20 MB line
    [d] = res.dead
    assert (d.reason, d.line, d.raw_length, d.raw_sha256) == ("oversized", 2, len(line),
                                                              hashlib.sha256(line).hexdigest())
    assert d.raw == "A" * DLQ_PREFIX_BYTES and len(res.alerts) == 2  # the lines around it still count
    code, output = replay(f, "--tenant", "t", "--out", tmp_path / "o")
    assert code == 0 and (tmp_path / "o" / "dlq.jsonl").stat().st_size < 2 * DLQ_PREFIX_BYTES, output


def test_line_at_the_limit_is_a_record(tmp_path: Path) -> None:
    f = tmp_path / "edge.log"
    f.write_bytes(b"x" * MAX_RECORD_BYTES + b"\r\n" + b"y" * (MAX_RECORD_BYTES + 1))
    recs = [r for r, _ in read_records(str(f), "t", None, T0)]
    assert recs[0].problem is None and len(recs[0].text) == MAX_RECORD_BYTES
    assert recs[1].problem is not None and recs[1].problem.length == MAX_RECORD_BYTES + 1


def test_huge_whole_file_document_is_oversized(tmp_path: Path) -> None:
    """AIDE's JSON report is one record per file: the same bound applies."""
    f = tmp_path / "aide.json"
    head = b'{"start_time": "2026-11-24 06:00:00 +0000", "aide_version": "0.18.3", "added": {'
    body = b",".join(b'"/srv/f%d": "f++++++++++++++++"' % i for i in range(60_000))
    f.write_bytes(head + body + b"}}")
    [(rec, fmt)] = list(read_records(str(f), "t", None, T0))
    assert fmt == "aide" and rec.problem is not None and rec.problem.reason == "oversized"
    assert rec.problem.length == f.stat().st_size and rec.problem.prefix.startswith(head)


def _bomb(path: Path, decompressed_mib: int, data: bytes = b"A") -> None:
    """A gzip file of `decompressed_mib` MiB of `data` (members of 64 MiB, each ~64 KB compressed)."""
    member = 64
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = c.compress(data * ((member << 20) // len(data))) + c.flush()
    with open(path, "wb") as fh:
        for _ in range(decompressed_mib // member):
            fh.write(block)


def test_gzip_bomb_stops_at_the_decompression_cap(tmp_path: Path) -> None:
    """A 97 KB bomb wrote a 600 MB dead-letter file."""
    f = tmp_path / "eve.json.gz"
    _bomb(f, 128, b"\n")  # 128 MiB of empty lines in ~130 KB
    limits = Limits(expansion_ratio=1, expansion_floor=1 << 18)
    res = normalize(f, limits)
    cap = limits.decompressed(f.stat().st_size)
    assert [d.reason for d in res.dead] == ["decompression_limit"]
    assert res.dead[0].line == cap + 1 and res.skipped["blank"] == cap
    assert str(cap) in res.dead[0].detail and "the rest of the file was not read" in res.dead[0].detail


def test_gzip_bomb_dead_letter_keeps_the_start_of_the_record(tmp_path: Path) -> None:
    f = tmp_path / "x.gz"
    _bomb(f, 128)
    [d] = normalize(f, Limits(expansion_ratio=1, expansion_floor=4 << 20)).dead
    assert d.reason == "decompression_limit" and d.line == 1 and d.raw == "A" * DLQ_PREFIX_BYTES


def test_truncated_gzip_is_a_read_error_after_the_records_before_it(tmp_path: Path) -> None:
    f = tmp_path / "auth.log.gz"
    whole = gzip.compress(SSHD.read_bytes() * 100)
    f.write_bytes(whole[: len(whole) // 2])
    res = normalize(f)
    assert res.records > 1 and res.dead[-1].reason == "read_error" and res.dead[-1].file == str(f)
    assert "the rest of the file was not read" in res.dead[-1].detail


def test_unreadable_file_is_a_read_error(tmp_path: Path) -> None:
    f = tmp_path / "auth.log"
    shutil.copy(SSHD, f)
    f.chmod(0)
    if os.access(f, os.R_OK):
        pytest.skip("running as a user that reads any file")
    [d] = normalize(f).dead
    assert d.reason == "read_error" and "Permission denied" in d.detail


def _limit_memory() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))


def test_gzip_bomb_under_a_memory_limit(tmp_path: Path) -> None:
    """A 970 KB bomb (about 1 GB of one JSON line) crashed replay under a memory limit; it now finishes
    with two small dead letters and memory to spare."""
    f = tmp_path / "eve.json.gz"
    _bomb(f, 1536)  # 1.5 GiB of "A" in ~1.5 MB: more than the process may map
    p = subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", str(f), "--tenant", "t", "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       preexec_fn=_limit_memory)
    assert p.returncode == 0, p.stderr[-3000:]
    [d] = dlq(tmp_path / "o")
    assert d["reason"] == "decompression_limit" and len(d["raw"]) == DLQ_PREFIX_BYTES
    assert (tmp_path / "o" / "dlq.jsonl").stat().st_size < 2 * DLQ_PREFIX_BYTES
