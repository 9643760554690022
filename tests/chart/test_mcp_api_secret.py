"""templates/mcp-api-secret.yaml: generated secrets are well-formed (and kept across upgrades through
lookup, which `helm template` cannot exercise: it returns nothing offline, so values are fresh each
render); existingSecret creates nothing."""

from __future__ import annotations

import base64
import json
import re

from chart_helpers import CHART, of_kind, one, render, render_case


def _data(docs) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in one(docs, "Secret")["data"].items()}


def test_generated_values_are_valid() -> None:
    data = _data(render_case("default"))
    assert set(data) == {"api-key", "request-state-keys", "tenant-hash-key"}
    assert re.fullmatch(r"sa_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{20,128}", data["api-key"])  # api_keys.KEY_RE
    keys = json.loads(data["request-state-keys"])
    assert len(keys) == 1 and len(keys[0]) >= 32
    assert len(data["tenant-hash-key"]) >= 32


def test_kept_across_uninstall() -> None:
    secret = one(render_case("default"), "Secret")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_generation_reuses_existing_values_via_lookup() -> None:
    text = (CHART / "templates" / "mcp-api-secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in text
    for key in ("$keys.apiKey", "$keys.requestStateKeys", "$keys.tenantHashKey"):
        assert f"hasKey $old {key}" in text


def test_given_values_are_used() -> None:
    data = _data(render(sets=(
        "secrets.apiKey=sa_abcdefabcdef_" + "k" * 30, "secrets.requestStateKeys[0]=" + "a" * 32,
        "database.type=postgresql", "secrets.databaseUrl=postgresql+asyncpg://u:p@db/sa",
        "settings.agent.providers.oai.kind=openai", "secrets.providerApiKeys.oai=sk-1",
    )))  # fmt: skip
    assert data["api-key"] == "sa_abcdefabcdef_" + "k" * 30
    assert json.loads(data["request-state-keys"]) == ["a" * 32]
    assert data["database-url"] == "postgresql+asyncpg://u:p@db/sa"
    assert data["provider-oai-api-key"] == "sk-1"


def test_existing_secret_creates_none() -> None:
    docs = render_case("production")
    assert not of_kind(docs, "Secret")
    test_pod = one(docs, "Pod", "test")
    assert test_pod["spec"]["volumes"][0]["secret"]["secretName"] == "secure-agent-prod"
