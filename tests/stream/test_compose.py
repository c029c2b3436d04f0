"""docker-compose.yml: the stack a machine with Docker runs (Kafka, worker, PostgreSQL, producer)."""

from __future__ import annotations

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


def test_compose_file_shape() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"kafka", "worker", "postgres", "producer"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4")
    assert services["worker"]["command"][0] == "worker"
    assert "kafka:9092" in services["worker"]["command"]
    assert (ROOT / services["worker"]["build"] / "Dockerfile").exists()


def test_docker_compose_config() -> None:
    cmd = _compose()
    if cmd is None:
        pytest.skip("no docker compose client on this machine")
    done = subprocess.run([*cmd, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
