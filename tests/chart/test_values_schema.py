"""values.schema.json and the template checks reject bad values with a message naming the value."""

from __future__ import annotations

import pytest
from chart_helpers import render_fails

SCHEMA_CASES = [
    (("seccomp.mode=unconfined",), "/seccomp/mode"),
    (
        ("mcpApi.securityContext.readOnlyRootFilesystem=false",),
        "/mcpApi/securityContext/readOnlyRootFilesystem",
    ),
    (
        ("mcpApi.securityContext.allowPrivilegeEscalation=true",),
        "/mcpApi/securityContext/allowPrivilegeEscalation",
    ),
    (("mcpApi.podSecurityContext.runAsNonRoot=false",), "/mcpApi/podSecurityContext/runAsNonRoot"),
    (("runners.port=80",), "/runners/port"),
    (("autoscaling.minReplicas=0",), "/autoscaling/minReplicas"),
    (("ingress.nginx.proxyBuffering=maybe",), "/ingress/nginx/proxyBuffering"),
    (("ingress.nginx.proxyReadTimeout=5",), "/ingress/nginx/proxyReadTimeout"),
    (("database.type=mysql",), "/database/type"),
    (("secrets.apiKey=hunter2",), "/secrets/apiKey"),
    (("secrets.requestStateKeys[0]=short",), "/secrets/requestStateKeys/0"),
    (("mcpApi.image.digest=latest",), "/mcpApi/image/digest"),
    (("unknownTopLevel=1",), "additional properties 'unknownTopLevel' not allowed"),
    (("mcpApi.replicas=2",), "additional properties 'replicas' not allowed"),
    # settings is generated from mcp_api.settings.Settings: invented or secret settings are refused
    (("settings.api_key_pepper=x",), "additional properties 'api_key_pepper' not allowed"),
    (("settings.database_url=postgresql://u:p@h/db",), "additional properties 'database_url' not allowed"),
    (("settings.kubernetes.seccomp=Localhost",), "additional properties 'seccomp' not allowed"),
    (
        ("settings.agent.providers.oai.kind=openai", "settings.agent.providers.oai.api_key=sk-1"),
        "additional properties 'api_key' not allowed",
    ),
    (("settings.log_level=LOUD",), "/settings/log_level"),
    (("settings.rate_limits.key_burst=0",), "/settings/rate_limits/key_burst"),
]


@pytest.mark.parametrize(("sets", "message"), SCHEMA_CASES, ids=[c[1] for c in SCHEMA_CASES])
def test_schema_rejects(sets: tuple[str, ...], message: str) -> None:
    err = render_fails(*sets)
    assert "values don't meet the specifications of the schema" in err, err
    assert message in err, err


TEMPLATE_CASES = [
    (
        ("database.type=postgresql",),
        "database.type=postgresql needs secrets.databaseUrl or secrets.existingSecret",
    ),
    (("redis.enabled=true",), "redis.enabled needs secrets.redisUrl or secrets.existingSecret"),
    (("mcpApi.replicaCount=3",), "more than one replica"),
    (
        ("secrets.providerApiKeys.oai=sk-1",),
        "secrets.providerApiKeys.oai has no provider settings.agent.providers.oai",
    ),
]


@pytest.mark.parametrize(("sets", "message"), TEMPLATE_CASES, ids=[c[1][:40] for c in TEMPLATE_CASES])
def test_template_checks_reject(sets: tuple[str, ...], message: str) -> None:
    assert message in render_fails(*sets)
