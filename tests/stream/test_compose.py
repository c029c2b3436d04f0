"""Dockerfile and docker-compose.yml: the image and the stack a machine with Docker runs (Kafka, two workers,
PostgreSQL, the sample producer, the command line). No Docker engine runs here, so the files are checked as
text: multi-stage build, non-root runtime with the default model, volumes for MDR_HOME, the store and the
worker state, a healthcheck; `docker compose config` where a compose client exists."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                  check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        stages[-1].append((word.upper(), " ".join(rest.split())))
    return stages


def args(stage: list[tuple[str, str]], word: str) -> list[str]:
    return [a for w, a in stage if w == word]


def test_image_is_multi_stage_non_root_with_model_volumes_and_healthcheck() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    build, final = stages[0], stages[-1]
    assert "build-essential" in " ".join(args(build, "RUN"))
    assert "build-essential" not in " ".join(args(final, "RUN"))  # the build tools stay in the build stage
    assert any(a.startswith("--from=build ") for a in args(final, "COPY"))
    copies = {a.split()[-2] for a in args(final, "COPY") if not a.startswith("--from")}
    assert {"models", "usecases", "playbooks", "samples"} <= copies  # the default noise model is in the image
    for src in copies:
        assert (ROOT / src).exists(), src
    [user] = args(final, "USER")
    assert user not in ("root", "0") and not user.startswith("0:")
    assert "useradd" in " ".join(args(final, "RUN")) and user in " ".join(args(final, "RUN"))
    env = dict(kv.split("=", 1) for a in args(final, "ENV") for kv in shlex.split(a))
    volumes = [v for a in args(final, "VOLUME") for v in yaml.safe_load(a)]
    assert env["MDR_HOME"] in volumes  # imported assets and intel survive the container
    store = env["MDR_DB_URL"].removeprefix("sqlite:///")
    assert any(store.startswith(v + "/") for v in volumes)  # so does the default store
    cmd = yaml.safe_load(args(final, "CMD")[0])
    assert cmd[0] == "worker" and cmd[cmd.index("--data-dir") + 1] in volumes
    assert cmd[cmd.index("--model") + 1] == "/app/models/noise-default" and (ROOT / "models" / "noise-default").is_dir()
    [health] = args(final, "HEALTHCHECK")
    assert "/healthz" in health and str(cmd[cmd.index("--metrics-port") + 1]) in health
    assert yaml.safe_load(args(final, "ENTRYPOINT")[0]) == ["mdr"]


def test_compose_has_broker_workers_and_postgres() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4")
    assert services["postgres"]["image"].startswith("postgres:")
    workers = {k: v for k, v in services.items() if v.get("command", [None])[0] == "worker"}
    assert len(workers) >= 2
    states = set()
    for name, w in workers.items():
        assert (ROOT / w["build"] / "Dockerfile").exists()
        assert w["environment"]["MDR_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert w["environment"]["MDR_DB_URL"].startswith("postgresql://") and "@postgres:" in \
            w["environment"]["MDR_DB_URL"]
        assert {k: v["condition"] for k, v in w["depends_on"].items()} == {"kafka": "service_healthy",
                                                                          "postgres": "service_healthy"}
        mounts = dict(reversed(v.split(":", 1)) for v in w["volumes"])
        assert mounts["/var/lib/mdr/home"] == "mdr-home", name  # one MDR_HOME for every container
        states.add(mounts[w["command"][w["command"].index("--data-dir") + 1]])
        assert w["stop_signal"] == "SIGTERM"
    assert len(states) == len(workers)  # each worker its own RocksDB state
    for name in ("producer", "mdr"):
        assert "mdr-home:/var/lib/mdr/home" in services[name]["volumes"]
    assert set(doc["volumes"]) >= {"mdr-home", "pg-data", *states}


def test_docker_compose_config() -> None:
    cmd = _compose()
    if cmd is None:
        pytest.skip("no docker compose client on this machine")
    done = subprocess.run([*cmd, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
