"""templates/mcp-api-configmap.yaml: the settings env. Every SECURE_AGENT_* name the chart renders is a
real field of mcp_api.settings.Settings (nothing invented), the values parse with the real Settings
model, and no secret is ever in the ConfigMap."""

from __future__ import annotations

import typing

import pytest
from chart_helpers import CASES, NAMESPACE, one, render, render_case
from mcp_api.settings import Settings
from pydantic import BaseModel

# Process settings read by the image's gunicorn.conf.py, not by the Settings model.
PROCESS_ENV = {"SECURE_AGENT_WORKERS"}


def _settings_env(docs) -> dict[str, str]:
    return one(docs, "ConfigMap", "mcp-api-settings")["data"]


def _env_names(docs) -> set[str]:
    dep = one(docs, "Deployment", "mcp-api")
    return {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]} | set(
        _settings_env(docs)
    )


def _resolves(model: type[BaseModel], parts: list[str]) -> bool:
    """Does SECURE_AGENT_A__B__C name a field path of the model (dict keys are free)?"""
    fields = {name.upper(): f for name, f in model.model_fields.items()}
    head, rest = parts[0], parts[1:]
    if head not in fields:
        return False
    if not rest:
        return True
    annotation = fields[head].annotation
    for arg in [annotation, *typing.get_args(annotation)]:
        if isinstance(arg, type) and issubclass(arg, BaseModel) and _resolves(arg, rest):
            return True
        if typing.get_origin(arg) is dict:
            value = typing.get_args(arg)[1]
            if len(rest) == 1:
                return True
            if isinstance(value, type) and issubclass(value, BaseModel) and _resolves(value, rest[1:]):
                return True
    return False


@pytest.mark.parametrize("case", CASES)
def test_every_env_name_is_a_real_setting(case: str) -> None:
    unknown = [
        n for n in _env_names(render_case(case))
        if n not in PROCESS_ENV and not _resolves(Settings, n.removeprefix("SECURE_AGENT_").split("__"))
    ]  # fmt: skip
    assert not unknown, unknown


def test_resolver_is_not_vacuous() -> None:
    assert _resolves(Settings, ["KUBERNETES", "SECCOMP"])
    assert _resolves(Settings, ["AGENT", "PROVIDERS", "OAI", "API_KEY"])
    assert not _resolves(Settings, ["KUBERNETES", "SECCOMP_MODE"])
    assert not _resolves(Settings, ["API_KEY_PEPPER"])


@pytest.mark.parametrize("case", CASES)
def test_rendered_settings_load_in_the_real_model(case: str, monkeypatch, tmp_path) -> None:
    docs = render_case(case)
    for name, value in _settings_env(docs).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SECURE_AGENT_DATA_DIR", str(tmp_path))  # /data does not exist here
    s = Settings()
    assert s.runner.backend == "kubernetes"
    assert s.kubernetes.in_cluster is True
    assert s.host == "0.0.0.0" and s.port == 8080
    assert s.profiles.namespace == NAMESPACE
    assert "sa-secure-agent-mcp-api.secure-agent.svc:*" in s.allowed_hosts


def test_production_settings_values() -> None:
    env = _settings_env(render_case("production"))
    assert env["SECURE_AGENT_PUBLIC_URL"] == "https://mcp.example.com"
    assert env["SECURE_AGENT_KUBERNETES__NAMESPACE"] == "secure-agent-runners"
    assert env["SECURE_AGENT_KUBERNETES__IMAGE"].startswith("secure-agent/agent-runner@sha256:")
    assert env["SECURE_AGENT_AGENT__ROLES__DEFAULT__PARAMS"] == '{"temperature":0.2}'
    assert env["SECURE_AGENT_TRUSTED_PROXIES"] == '["10.0.0.0/8"]'
    assert "mcp.example.com" in env["SECURE_AGENT_ALLOWED_HOSTS"]


def test_numbers_render_exactly() -> None:
    env = _settings_env(
        render(sets=("settings.max_request_bytes=16777216", "json:settings.rate_limits.key_per_s=2.5"))
    )
    assert env["SECURE_AGENT_MAX_REQUEST_BYTES"] == "16777216"
    assert env["SECURE_AGENT_RATE_LIMITS__KEY_PER_S"] == "2.5"


@pytest.mark.parametrize("case", CASES)
def test_no_secret_in_any_configmap(case: str) -> None:
    secret_names = (
        "API_KEY",
        "DATABASE_URL",
        "REQUEST_STATE_KEYS",
        "REDIS_URL",
        "TENANT_HASH_KEY",
        "OTLP_HEADERS",
    )
    for cm in [d for d in render_case(case) if d["kind"] == "ConfigMap"]:
        for key in cm.get("data", {}):
            assert not any(s in key for s in secret_names), (cm["metadata"]["name"], key)


def test_secret_values_never_reach_a_configmap() -> None:
    docs = render(sets=("database.type=postgresql", "secrets.databaseUrl=postgresql://u:hunter2hunter2@db/sa",
                        "redis.enabled=true", "secrets.redisUrl=redis://:hunter3hunter3@r:6379/0",
                        "settings.agent.providers.oai.kind=openai", "secrets.providerApiKeys.oai=sk-hunter4hunter4"))  # fmt: skip
    for d in docs:
        if d["kind"] != "Secret":
            text = str(d)
            for secret in ("hunter2hunter2", "hunter3hunter3", "sk-hunter4hunter4"):
                assert secret not in text, (d["kind"], d["metadata"]["name"])
