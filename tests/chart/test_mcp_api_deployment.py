"""templates/mcp-api-deployment.yaml: probes, volumes, topology spread, env from settings and the
Secret, checksum annotations."""

from __future__ import annotations

from chart_helpers import CHART, one, render, render_case


def _deploy(docs):
    return one(docs, "Deployment", "mcp-api")


def _container(docs):
    return _deploy(docs)["spec"]["template"]["spec"]["containers"][0]


def test_probes_use_health_and_ready() -> None:
    c = _container(render_case("default"))
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_writable_paths_are_emptydirs() -> None:
    docs = render_case("default")
    spec = _deploy(docs)["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in _container(docs)["volumeMounts"]}
    assert mounts == {"/tmp": "tmp", "/data": "data"}
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["tmp"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}
    assert vols["data"]["emptyDir"] == {"sizeLimit": "1Gi"}
    pvc = _deploy(render(sets=("mcpApi.dataVolume.existingClaim=sa-data",)))["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pvc["volumes"]}["data"] == {
        "name": "data",
        "persistentVolumeClaim": {"claimName": "sa-data"},
    }


def test_topology_spread_over_zones_and_nodes() -> None:
    spec = _deploy(render_case("default"))["spec"]["template"]["spec"]
    keys = [t["topologyKey"] for t in spec["topologySpreadConstraints"]]
    assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    for t in spec["topologySpreadConstraints"]:
        assert (
            t["labelSelector"]["matchLabels"]
            == _deploy(render_case("default"))["spec"]["selector"]["matchLabels"]
        )
    off = _deploy(render(sets=("mcpApi.topologySpread.enabled=false",)))["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in off


def test_settings_come_from_the_configmap_and_secrets_from_the_secret() -> None:
    docs = render_case("production")
    c = _container(docs)
    assert c["envFrom"] == [{"configMapRef": {"name": "sa-secure-agent-mcp-api-settings"}}]
    env = {e["name"]: e for e in c["env"]}
    refs = {n: e["valueFrom"]["secretKeyRef"] for n, e in env.items() if "valueFrom" in e}
    assert {r["name"] for r in refs.values()} == {"secure-agent-prod"}
    assert refs["SECURE_AGENT_DATABASE_URL"]["key"] == "database-url"
    assert refs["SECURE_AGENT_REDIS_URL"]["key"] == "redis-url"
    assert refs["SECURE_AGENT_DEV_API_KEY"]["key"] == "api-key"
    assert refs["SECURE_AGENT_AGENT__PROVIDERS__OAI__API_KEY"] == {
        "name": "secure-agent-prod",
        "key": "provider-oai-api-key",
        "optional": True,
    }
    assert env["SECURE_AGENT_WORKERS"]["value"] == "4"
    # Nothing secret is a literal value.
    assert all("valueFrom" in e for n, e in env.items() if n != "SECURE_AGENT_WORKERS")


def test_checksums_roll_pods_on_settings_and_secret_changes() -> None:
    def annotations(*sets):
        return _deploy(render(sets=sets))["spec"]["template"]["metadata"]["annotations"]

    base = annotations(
        "secrets.apiKey=sa_abcdefabcdef_" + "x" * 30,
        "secrets.tenantHashKey=k",
        "secrets.requestStateKeys[0]=" + "r" * 40,
    )
    again = annotations(
        "secrets.apiKey=sa_abcdefabcdef_" + "x" * 30,
        "secrets.tenantHashKey=k",
        "secrets.requestStateKeys[0]=" + "r" * 40,
    )
    assert base == again
    other_settings = annotations(
        "secrets.apiKey=sa_abcdefabcdef_" + "x" * 30,
        "secrets.tenantHashKey=k",
        "secrets.requestStateKeys[0]=" + "r" * 40,
        "settings.log_level=DEBUG",
    )
    assert other_settings["checksum/settings"] != base["checksum/settings"]
    assert other_settings["checksum/secret"] == base["checksum/secret"]
    other_secret = annotations(
        "secrets.apiKey=sa_abcdefabcdef_" + "y" * 30,
        "secrets.tenantHashKey=k",
        "secrets.requestStateKeys[0]=" + "r" * 40,
    )
    assert other_secret["checksum/secret"] != base["checksum/secret"]
    assert (
        "checksum/secret"
        not in _deploy(render_case("production"))["spec"]["template"]["metadata"]["annotations"]
    )


def test_replicas_follow_hpa() -> None:
    assert _deploy(render_case("default"))["spec"]["replicas"] == 1
    assert "replicas" not in _deploy(render_case("production"))["spec"]


def test_images_default_to_app_version_and_digests_win() -> None:
    import yaml

    app = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert _container(render_case("default"))["image"] == f"secure-agent/mcp-api:{app}"
    assert _container(render_case("production"))["image"].startswith("secure-agent/mcp-api@sha256:")
    assert (
        _container(render(sets=("mcpApi.image.registry=reg.example.com", "mcpApi.image.tag=1.2.3")))["image"]
        == "reg.example.com/secure-agent/mcp-api:1.2.3"
    )
