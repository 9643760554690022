"""deploy/{eks,gke,aks}.sh and deploy/values/*.yaml, deploy/compose/init-secrets.sh.

- every script passes `bash -n` and shellcheck (installed by `make system-deps`; skipped without it);
- `--dry-run` prints one `helm upgrade --install` with the cloud's values file, the host, TLS secret,
  cert-manager issuer, ingress class, images and existing Secret, and contacts nothing;
- a missing or malformed argument fails with exit 2 and a message naming it, before helm is looked for;
- the printed command, run as `helm template` against the real chart, renders (the values files and
  every --set satisfy the chart's values.schema.json) with the expected objects.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_helpers import REPO, find_tool

CLOUDS = {"eks": "nginx", "gke": "nginx", "aks": "webapprouting.kubernetes.azure.com"}
SCRIPTS = sorted([*(REPO / "deploy").glob("*.sh"), *(REPO / "deploy/lib").glob("*.sh"), *(REPO / "deploy/compose").glob("*.sh")])  # fmt: skip
REQUIRED = ["--host", "mcp.example.com", "--registry", "registry.example.com/team", "--tag", "1.2.3",
            "--existing-secret", "secure-agent-secrets"]  # fmt: skip


def run(cloud: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if k not in ("SECURE_AGENT_HOST_NAME", "IMAGE_REGISTRY", "IMAGE_TAG", "EXISTING_SECRET", "RELEASE",
                         "NAMESPACE", "INGRESS_CLASS", "CLUSTER_ISSUER", "KUBE_CONTEXT")}  # fmt: skip
    # No helm on PATH: a dry run must not need it, and a failing validation must come before it.
    base["PATH"] = "/usr/bin:/bin"
    return subprocess.run([str(REPO / f"deploy/{cloud}.sh"), *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=30)  # fmt: skip


def test_all_scripts_found() -> None:
    names = {p.relative_to(REPO).as_posix() for p in SCRIPTS}
    assert {"deploy/eks.sh", "deploy/gke.sh", "deploy/aks.sh", "deploy/lib/helm-deploy.sh",
            "deploy/compose/init-secrets.sh"} <= names  # fmt: skip
    for cloud in CLOUDS:
        assert os.access(REPO / f"deploy/{cloud}.sh", os.X_OK)
        assert (REPO / f"deploy/values/{cloud}.yaml").is_file()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_bash_syntax_and_strict_mode(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "set -euo pipefail" in script.read_text()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_shellcheck(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck missing: `make system-deps` installs it (Debian package shellcheck)")
    result = subprocess.run([shellcheck, "-x", "-P", "SCRIPTDIR", str(script)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("cloud", CLOUDS)
def test_dry_run_prints_the_helm_command(cloud: str) -> None:
    result = run(cloud, *REQUIRED, "--dry-run")
    assert result.returncode == 0, result.stderr
    argv = shlex.split(result.stdout)
    assert argv[:5] == ["helm", "upgrade", "--install", "secure-agent", str(REPO / "charts/secure-agent")]
    assert argv[argv.index("--namespace") + 1] == "secure-agent" and "--create-namespace" in argv
    assert argv[argv.index("-f") + 1] == str(REPO / f"deploy/values/{cloud}.yaml")
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set-string"]
    assert sets == [
        "publicUrl=https://mcp.example.com",
        f"ingress.className={CLOUDS[cloud]}",
        "ingress.hosts[0].host=mcp.example.com",
        "ingress.tls[0].secretName=secure-agent-tls",
        "ingress.tls[0].hosts[0]=mcp.example.com",
        "ingress.annotations.cert-manager\\.io/cluster-issuer=letsencrypt-prod",
        "mcpApi.image.registry=registry.example.com/team",
        "mcpApi.image.tag=1.2.3",
        "runners.image.registry=registry.example.com/team",
        "runners.image.tag=1.2.3",
        "secrets.existingSecret=secure-agent-secrets",
    ]
    assert {"--atomic", "--wait"} <= set(argv) and argv[argv.index("--timeout") + 1] == "10m"
    assert "--kube-context" not in argv


def test_options_and_environment_override_defaults(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("mcpApi: {replicaCount: 3}\n")
    result = run("gke", "--dry-run", "--ingress-class", "gce", "--cluster-issuer", "internal-ca",
                 "--namespace", "mcp", "--release", "agent", "--kube-context", "gke_p_z_c", "-f", str(extra),
                 env={"SECURE_AGENT_HOST_NAME": "mcp.corp.example", "IMAGE_REGISTRY": "europe-docker.pkg.dev/p/r",
                      "IMAGE_TAG": "sha-abc", "EXISTING_SECRET": "s"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    argv = shlex.split(result.stdout)
    assert argv[3] == "agent" and argv[argv.index("--namespace") + 1] == "mcp"
    assert argv[argv.index("--kube-context") + 1] == "gke_p_z_c"
    files = [argv[i + 1] for i, a in enumerate(argv) if a == "-f"]
    assert files == [str(REPO / "deploy/values/gke.yaml"), str(extra)]  # the user's file wins (last)
    text = " ".join(argv)
    for fragment in ("ingress.className=gce", "cluster-issuer=internal-ca", "publicUrl=https://mcp.corp.example",
                     "mcpApi.image.registry=europe-docker.pkg.dev/p/r", "mcpApi.image.tag=sha-abc",
                     "ingress.tls[0].secretName=agent-tls"):  # fmt: skip
        assert fragment in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "missing required: --host (or SECURE_AGENT_HOST_NAME), --registry (or IMAGE_REGISTRY), --tag (or IMAGE_TAG), --existing-secret (or EXISTING_SECRET)"),
        (REQUIRED[:6], "missing required: --existing-secret (or EXISTING_SECRET)"),
        (["--host", "https://mcp.example.com", *REQUIRED[2:]], "--host must be a lowercase DNS name"),
        ([*REQUIRED[:2], "--registry", "https://r.example.com", *REQUIRED[4:]], "--registry must look like"),
        ([*REQUIRED[:4], "--tag", "bad tag", *REQUIRED[6:]], "--tag is not a valid image tag"),
        ([*REQUIRED, "--namespace", "Bad_NS"], "--namespace is not a valid namespace"),
        ([*REQUIRED, "-f", "/nonexistent/values.yaml"], "values file not found: /nonexistent/values.yaml"),
        ([*REQUIRED, "--tag"], "--tag needs a value"),
        ([*REQUIRED, "--bogus"], "unknown argument: --bogus"),
    ],
)  # fmt: skip
def test_bad_arguments_fail_clearly(args: list[str], message: str) -> None:
    for dry in ([], ["--dry-run"]):
        result = run("eks", *args, *dry)
        assert result.returncode == 2
        assert result.stdout == ""
        assert message in result.stderr, result.stderr
        assert "deploy/eks.sh --help" in result.stderr


def test_without_dry_run_helm_is_required() -> None:
    result = run("aks", *REQUIRED)  # PATH has no helm: the script says so instead of failing obscurely
    assert result.returncode == 2 and "helm is not installed" in result.stderr


def test_help() -> None:
    result = run("eks", "--help")
    assert result.returncode == 0 and "Usage: deploy/eks.sh --host HOST" in result.stdout


@pytest.mark.parametrize("cloud", CLOUDS)
def test_dry_run_command_renders_with_the_real_chart(cloud: str) -> None:
    helm = find_tool("helm")
    if helm is None:
        pytest.skip("helm missing: scripts/install-helm.sh helm puts it in .tools/bin")
    argv = shlex.split(run(cloud, *REQUIRED, "--dry-run").stdout)
    template = [helm, "template", *argv[3:]]
    for flag in ("--create-namespace", "--atomic", "--wait"):
        template.remove(flag)
    i = template.index("--timeout")
    del template[i : i + 2]
    result = subprocess.run(template, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    ingress = next(o for o in objects if o["kind"] == "Ingress")
    assert ingress["spec"]["ingressClassName"] == CLOUDS[cloud]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert ingress["spec"]["tls"] == [{"secretName": "secure-agent-tls", "hosts": ["mcp.example.com"]}]
    images = {c["image"] for o in objects if o["kind"] == "Deployment" for c in o["spec"]["template"]["spec"]["containers"]}  # fmt: skip
    assert images == {"registry.example.com/team/secure-agent/mcp-api:1.2.3"}
    assert "registry.example.com/team/secure-agent/agent-runner:1.2.3" in result.stdout
    assert not [o for o in objects if o["kind"] == "Secret"], "with an existing Secret the chart creates none"
    assert "secretKeyRef: {name: secure-agent-secrets, key: database-url}" in result.stdout or \
        "secure-agent-secrets" in result.stdout
    kinds = {o["kind"] for o in objects}
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
