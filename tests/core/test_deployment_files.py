"""The deployment files stay true to the code: no Docker engine runs here, so we parse them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from marketplace.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _setting_names() -> set[str]:
    return {field.alias or name.upper() for name, field in Settings.model_fields.items()}


def test_env_example_documents_every_setting() -> None:
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert _setting_names() - documented == set()


def test_compose_runs_postgres_redis_api_and_worker_with_health_checks() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "api", "worker"} <= set(services)
    for name in ("postgres", "redis", "api"):
        assert services[name]["healthcheck"]["test"], name
    assert "--appendonly" in services["redis"]["command"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://") and "@postgres:" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert set(env) <= _setting_names(), set(env) - _setting_names()
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["worker"]["command"][:2] == ["marketplace", "worker"]
    assert services["api"]["command"][:2] == ["marketplace", "serve"]


def test_dockerfile_installs_the_locked_dependencies_and_serves() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements.lock" in dockerfile and '"marketplace", "serve"' in dockerfile


def test_lock_file_pins_exact_versions_without_urls() -> None:
    lines = [line for line in (ROOT / "requirements.lock").read_text().splitlines() if line.strip()]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+", line) for line in lines), lines
