"""docker-compose.yml: valid, complete on disk, hardened per service, no inline secrets.

What is proven here (no container engine can run here):
- the file parses, and validates against the compose-spec JSON schema (or `docker compose config`
  where a Compose v2 CLI exists);
- every local path it references exists: the build context and Dockerfile, each read-only bind mount,
  the seccomp profile; the secret files are the ones deploy/compose/init-secrets.sh generates;
- per service: read-only root, ALL capabilities dropped, no-new-privileges, non-root user, cpu/memory/
  pids limits, noexec tmpfs, ports only on 127.0.0.1 and unprivileged; mcp-api (whose local runners
  execute commands) gets the runner's seccomp profile;
- secrets are compose secrets or the generated env_file, never inline values;
- init-secrets.sh is idempotent, keeps its directory private, and its env file is accepted by Settings
  with every name a real setting, the database URL carrying the postgres password;
- prometheus.yml passes `promtool check config` with the real rules file and scrapes the job the rules
  select on; Grafana is provisioned with the repo's dashboards and a datasource pointing at Prometheus.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from deploy_helpers import REPO, compose_spec_schema
from mcp_api.cli import envfiles
from mcp_api.settings import Settings

COMPOSE = REPO / "docker-compose.yml"
INIT_SECRETS = REPO / "deploy/compose/init-secrets.sh"
SECRETS_DIR = REPO / "deploy/compose/secrets"
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY|KEYS|DATABASE_URL|REDIS_URL|API_KEY", re.I)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def test_services_present(compose: dict) -> None:
    assert set(services(compose)) == {"mcp-api", "postgres", "prometheus", "grafana"}
    api = services(compose)["mcp-api"]
    assert api["image"] == "secure-agent/mcp-api:dev"
    assert api["build"] == {"context": ".", "dockerfile": "services/mcp-api/Dockerfile"}
    assert "workspace:/data" in api["volumes"]
    assert "workspace" in compose["volumes"]
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_validates_against_the_compose_spec(compose: dict, tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        secrets = tmp_path / "secrets"
        subprocess.run([str(INIT_SECRETS), "--dir", str(secrets)], check=True, capture_output=True)
        result = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, cwd=REPO)  # fmt: skip
        assert result.returncode == 0, result.stderr
    schema = compose_spec_schema()
    if schema is None:
        pytest.skip("no compose-spec schema: `make deploy-test-deps` installs check-jsonschema (it vendors it)")
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    # The schema is really strict: a misspelt key is caught.
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["mcp-api"]["read_onyl"] = True
    assert list(validator.iter_errors(broken))


def _host_path(source: str) -> Path:
    return (REPO / source).resolve()


def test_every_referenced_local_path_exists(compose: dict, tmp_path: Path) -> None:
    generated = {p.name for p in _run_init_secrets(tmp_path / "s")}
    for name, svc in services(compose).items():
        if "build" in svc:
            context = _host_path(svc["build"]["context"])
            assert context.is_dir()
            assert (context / svc["build"]["dockerfile"]).is_file(), f"{name}: Dockerfile missing"
        for volume in svc.get("volumes", []):
            source, _, rest = volume.partition(":")
            if source.startswith((".", "/")):
                assert _host_path(source).exists(), f"{name}: bind source {source} missing"
                assert rest.endswith(":ro"), f"{name}: host path {source} must be mounted read-only"
                assert not source.startswith("/"), f"{name}: absolute host path {source} (rootless-unfriendly)"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
        for env_file in svc.get("env_file", []):
            path = _host_path(env_file)
            assert path.parent == SECRETS_DIR and path.name in generated, env_file
        for option in svc.get("security_opt", []):
            if option.startswith("seccomp"):
                assert _host_path(option.split("=", 1)[1]).is_file()
    for secret in compose["secrets"].values():
        path = _host_path(secret["file"])
        assert path.parent == SECRETS_DIR and path.name in generated, secret
    ignore = (SECRETS_DIR / ".gitignore").read_text().split()
    assert ignore[ignore.index("*") :] == ["*", "!.gitignore"], "generated secrets must stay out of git"


@pytest.mark.parametrize("name", ["mcp-api", "postgres", "prometheus", "grafana"])
def test_service_is_hardened(compose: dict, name: str) -> None:
    svc = services(compose)[name]
    assert svc.get("read_only") is True
    assert svc.get("cap_drop") == ["ALL"] and not svc.get("cap_add")
    assert "no-new-privileges:true" in svc["security_opt"]
    assert not svc.get("privileged") and svc.get("network_mode") != "host" and svc.get("pid") != "host"
    user = str(svc.get("user", ""))
    assert user and user.split(":")[0] not in ("0", "root"), f"{name} must run as a non-root user"
    assert float(svc["cpus"]) > 0 and svc["mem_limit"] and int(svc["pids_limit"]) > 0
    for mount in svc.get("tmpfs", []):
        assert {"noexec", "nosuid", "nodev"} <= set(mount.split(":", 1)[1].split(",")), mount
        assert "size=" in mount
    for port in svc.get("ports", []):
        host_ip, host_port, _ = str(port).split(":")
        assert host_ip == "127.0.0.1", f"{name}: {port} must bind loopback only"
        assert int(host_port) >= 1024, f"{name}: privileged port {port} (rootless engines cannot bind it)"
    assert not any(v.startswith("/var/run/docker.sock") for v in svc.get("volumes", []))


def test_mcp_api_runs_commands_under_the_runner_seccomp_profile(compose: dict) -> None:
    api = services(compose)["mcp-api"]
    assert "seccomp=./policies/seccomp/agent-runner.json" in api["security_opt"]
    assert api["environment"]["SECURE_AGENT_RUNNER__BACKEND"] == "local"
    assert any(m.startswith("/tmp:") and "noexec" in m for m in api["tmpfs"])
    for other in ("postgres", "prometheus", "grafana"):  # they keep the engine's default profile
        assert not any(o.startswith("seccomp") for o in services(compose)[other]["security_opt"])
        assert "unconfined" not in " ".join(services(compose)[other]["security_opt"])


def test_no_inline_secrets(compose: dict) -> None:
    for name, svc in services(compose).items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRETISH.search(key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), (name, key)
        for secret in svc.get("secrets", []):
            assert secret in compose["secrets"]
    assert "postgres_password" in services(compose)["postgres"]["secrets"]
    assert "grafana_admin_password" in services(compose)["grafana"]["secrets"]
    assert not re.search(r"postgresql\+?\w*://[^@\s]*:[^@\s]+@", COMPOSE.read_text())


def test_mcp_api_environment_names_are_real_settings(compose: dict) -> None:
    env = services(compose)["mcp-api"]["environment"]
    names = [k for k in env if k.startswith("SECURE_AGENT_")]
    assert names and all(envfiles.resolves(k) for k in names), [k for k in names if not envfiles.resolves(k)]


def _run_init_secrets(directory: Path) -> list[Path]:
    result = subprocess.run([str(INIT_SECRETS), "--dir", str(directory)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return sorted(p for p in directory.iterdir())


def test_init_secrets_generates_private_random_idempotent_secrets(tmp_path: Path, monkeypatch) -> None:
    directory = tmp_path / "secrets"
    files = _run_init_secrets(directory)
    assert [p.name for p in files] == ["grafana_admin_password", "mcp-api.env", "postgres_password"]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    before = {p.name: p.read_text() for p in files}
    assert _run_init_secrets(directory) and {p.name: p.read_text() for p in directory.iterdir()} == before
    other = {p.name: p.read_text() for p in _run_init_secrets(tmp_path / "other")}
    assert other["postgres_password"] != before["postgres_password"]
    password = before["postgres_password"]
    assert re.fullmatch(r"[0-9a-f]{48}", password)

    for name in list(os.environ):
        if name.startswith("SECURE_AGENT_"):
            monkeypatch.delenv(name)
    env_file = directory / "mcp-api.env"
    names = [m.group(1) for m in re.finditer(r"^(SECURE_AGENT_\w+)=", env_file.read_text(), re.M)]
    assert names and all(envfiles.resolves(n) for n in names)
    settings = Settings(_env_file=env_file)
    assert settings.database_url == f"postgresql+asyncpg://secure_agent:{password}@postgres:5432/secure_agent"
    assert len(settings.request_state_keys) == 1 and len(settings.request_state_keys[0].get_secret_value()) >= 32
    assert settings.logging.tenant_hash_key is not None

    bad = subprocess.run([str(INIT_SECRETS), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument: --bogus" in bad.stderr


def test_prometheus_config_checks_and_scrapes_the_rules_job(compose: dict, tmp_path: Path) -> None:
    config_path = REPO / "deploy/compose/prometheus/prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    rules = (REPO / "alerts/secure-agent.rules.yml").read_text()
    assert 'job="secure-agent"' in rules and "secure-agent" in jobs
    assert jobs["secure-agent"]["static_configs"][0]["targets"] == ["mcp-api:8080"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1)[::-1] for v in services(compose)["prometheus"]["volumes"] if v.startswith("./"))  # fmt: skip
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/compose/prometheus/prometheus.yml"
    assert config["rule_files"] == ["/etc/prometheus/rules/secure-agent.rules.yml"]
    assert mounts["/etc/prometheus/rules/secure-agent.rules.yml"] == "./alerts/secure-agent.rules.yml"

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing: `make system-deps` installs Debian's prometheus")
    local = tmp_path / "prometheus.yml"
    config["rule_files"] = [str(REPO / "alerts/secure-agent.rules.yml")]
    local.write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(local)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_is_provisioned_with_the_repo_dashboards(compose: dict) -> None:
    grafana = services(compose)["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    provisioning = REPO / mounts["/etc/grafana/provisioning"]
    providers = yaml.safe_load((provisioning / "dashboards/secure-agent.yml").read_text())["providers"]
    dashboards_path = providers[0]["options"]["path"]
    assert mounts[dashboards_path] == "./dashboards"
    assert sorted((REPO / "dashboards").glob("*.json")), "no dashboards to provision"
    datasources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    assert datasources[0]["type"] == "prometheus" and datasources[0]["isDefault"] is True
    assert datasources[0]["url"] == "http://prometheus:9090"
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    for dashboard in (REPO / "dashboards").glob("*.json"):  # they select the datasource by variable
        assert '"uid": "${datasource}"' in dashboard.read_text()
