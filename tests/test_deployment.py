"""The production shape (docker-compose.yml, Dockerfile, Grafana provisioning) checked against the code.

No Docker engine runs here, so these tests hold the compose file to what the roles actually read."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from llmscope.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
ROLES = ("migrate", "ingest", "worker", "query")


def _resolve(value: str) -> str:
    """Compose's ${VAR:-default} interpolation, with the defaults."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def test_compose_runs_the_full_production_shape() -> None:
    assert {"kafka", "clickhouse", "redis", "grafana", *ROLES} <= set(SERVICES)
    assert SERVICES["worker"]["deploy"]["replicas"] == 2
    for role in ROLES:
        assert SERVICES[role]["command"] == [role]
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper


def test_roles_start_only_after_migrate_completed() -> None:
    for role in ("ingest", "worker", "query", "grafana"):
        assert SERVICES[role]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["migrate"]["restart"] == "no"


def test_every_llmscope_variable_is_a_valid_setting() -> None:
    fields = set(Settings.model_fields)
    for role in ROLES:
        env = SERVICES[role]["environment"]
        overrides = {}
        for name, value in env.items():
            assert name.startswith("LLMSCOPE_"), name
            field = name.removeprefix("LLMSCOPE_").lower()
            assert field in fields, f"{name} is not a setting"
            overrides[field] = _resolve(value)
        settings = load_settings(**overrides)
        assert not settings.embedded_store and settings.redis_url and settings.kafka_idempotence


def test_published_ports_match_the_role_defaults() -> None:
    defaults = Settings()
    assert SERVICES["ingest"]["ports"] == [f"{defaults.ingest_port}:{defaults.ingest_port}"]
    assert SERVICES["query"]["ports"] == [f"{defaults.query_port}:{defaults.query_port}"]


def test_image_contains_every_package_the_distribution_ships() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in include:
        package = pattern.rstrip("*")
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert 'ENTRYPOINT ["llmscope"]' in dockerfile


def test_grafana_mounts_and_datasource_provisioning() -> None:
    volumes = SERVICES["grafana"]["volumes"]
    for volume in volumes:
        source = volume.split(":")[0]
        assert (ROOT / source).exists(), source
    datasources = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/clickhouse.yaml").read_text())
    ds = datasources["datasources"][0]
    assert ds["type"] == "grafana-clickhouse-datasource" and ds["uid"] == "llmscope-clickhouse"
    assert ds["jsonData"]["username"] == "grafana"  # the read-only user, never the writer
    assert "grafana-clickhouse-datasource" in SERVICES["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    reader = (ROOT / "dashboards/clickhouse/grafana-reader.xml").read_text()
    assert "<readonly>2</readonly>" in reader and "GRANT SELECT ON llmscope.*" in reader


def _healthcheck_url(service: str) -> tuple[int, str]:
    command = " ".join(SERVICES[service]["healthcheck"]["test"])
    match = re.search(r"http://localhost:(\d+)(/[\w/-]*)", command)
    assert match, command
    return int(match.group(1)), match.group(2)


def test_every_role_has_a_healthcheck_on_its_own_ready_endpoint() -> None:
    defaults = Settings()
    ports = {"ingest": defaults.ingest_port, "query": defaults.query_port, "worker": defaults.worker_port}
    for role, port in ports.items():
        assert _healthcheck_url(role) == (port, "/ready"), role


def test_healthcheck_paths_are_routes_of_the_role_apps(settings: Settings, store) -> None:  # type: ignore[no-untyped-def]
    from ingest.app import create_ingest_app
    from ingest.ratelimit import LocalRateLimiter
    from llmscope.auth import KeyResolver
    from llmscope.kafka import IngestProducer
    from query.app import create_query_app
    from streams.health import create_worker_http_app
    from streams.sink import StoreSink

    resolver = KeyResolver(store, 5.0)
    apps = {
        "ingest": create_ingest_app(settings, store, IngestProducer(settings), resolver, LocalRateLimiter()),
        "query": create_query_app(settings, store, resolver),
        "worker": create_worker_http_app(StoreSink(store)),
    }
    for role, app in apps.items():
        paths = {getattr(r, "path", None) for r in app.routes}
        assert {_healthcheck_url(role)[1], "/health", "/metrics"} <= paths, role


def test_prometheus_scrapes_every_role_on_its_port() -> None:
    defaults = Settings()
    config = yaml.safe_load((ROOT / "dashboards/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["llmscope-ingest"]["static_configs"][0]["targets"] == [f"ingest:{defaults.ingest_port}"]
    assert jobs["llmscope-query"]["static_configs"][0]["targets"] == [f"query:{defaults.query_port}"]
    worker = jobs["llmscope-worker"]["dns_sd_configs"][0]  # every replica, not one of them
    assert worker["names"] == ["worker"] and worker["port"] == defaults.worker_port
    for volume in SERVICES["prometheus"]["volumes"]:
        source = volume.split(":")[0]
        assert not source.startswith(".") or (ROOT / source).exists(), source
    datasources = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/prometheus.yaml").read_text())
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
