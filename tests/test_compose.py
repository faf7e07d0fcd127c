from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE_FILE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    return dict(document["services"])


def test_compose_config_validates() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    environment = {**os.environ, "PGRECALL_API_KEYS": '{"a-key-of-enough-length": ["*"]}'}
    completed = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    assert completed.returncode == 0, completed.stderr
    without_keys = {k: v for k, v in environment.items() if k != "PGRECALL_API_KEYS"}
    refused = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        env=without_keys,
    )
    assert refused.returncode != 0
    assert "PGRECALL_API_KEYS" in refused.stderr


def test_database_and_ollama_have_healthchecks(services: dict[str, Any]) -> None:
    assert services["postgres"]["image"] == "pgvector/pgvector:pg17"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["ollama"]["image"].startswith("ollama/ollama")
    assert services["ollama"]["healthcheck"]["test"]
    assert any(volume.endswith(":/root/.ollama") for volume in services["ollama"]["volumes"])


def test_model_is_pulled_once_before_pgrecall_starts(services: dict[str, Any]) -> None:
    pull = services["ollama-pull"]
    assert pull["depends_on"]["ollama"]["condition"] == "service_healthy"
    assert pull["entrypoint"][:2] == ["ollama", "pull"]
    pgrecall = services["pgrecall"]
    assert pgrecall["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert pgrecall["depends_on"]["ollama-pull"]["condition"] == ("service_completed_successfully")
    assert "pgrecall migrate && exec pgrecall serve" in pgrecall["command"][-1]
    assert pgrecall["ports"] == ["127.0.0.1:8080:8080"]
    assert "/readyz" in " ".join(pgrecall["healthcheck"]["test"])
    environment = pgrecall["environment"]
    assert environment["PGRECALL_DATABASE_URL"].startswith("postgresql://")
    assert environment["PGRECALL_OLLAMA_URL"] == "http://ollama:11434"
