#!/usr/bin/env bash
# Shared by deploy/eks.sh, deploy/gke.sh and deploy/aks.sh (sourced, not run): argument parsing,
# validation and the one `helm upgrade --install` of charts/secure-agent with a cloud's values file.
# A cloud script sets CLOUD, CLOUD_TITLE, DEFAULT_INGRESS_CLASS and DEFAULT_ISSUER, then calls deploy_main "$@".

set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "$DEPLOY_DIR/.." && pwd)"

usage() {
    cat <<USAGE
Deploy secure-agent to ${CLOUD_TITLE} with Helm (charts/secure-agent + deploy/values/${CLOUD}.yaml).

Usage: deploy/${CLOUD}.sh --host HOST --registry REGISTRY --tag TAG --existing-secret NAME [options]

Required (an option, or the environment variable in brackets):
  --host HOST               public host name of the MCP endpoint, e.g. mcp.example.com   [SECURE_AGENT_HOST_NAME]
  --registry REGISTRY       registry holding secure-agent/mcp-api and secure-agent/agent-runner  [IMAGE_REGISTRY]
  --tag TAG                 image tag to deploy (both images)                             [IMAGE_TAG]
  --existing-secret NAME    Secret in the namespace with database-url, redis-url, request-state-keys,
                            tenant-hash-key and api-key (the chart creates none)          [EXISTING_SECRET]
Options:
  --release NAME            Helm release (default: secure-agent)                         [RELEASE]
  --namespace NS            namespace (default: secure-agent; created if missing)        [NAMESPACE]
  --ingress-class CLASS     IngressClass (default: ${DEFAULT_INGRESS_CLASS})             [INGRESS_CLASS]
  --cluster-issuer NAME     cert-manager ClusterIssuer for the TLS certificate (default: ${DEFAULT_ISSUER}) [CLUSTER_ISSUER]
  --kube-context CTX        kubeconfig context (default: the current one)               [KUBE_CONTEXT]
  -f, --values FILE         extra values file, after the cloud's (repeatable)
  --timeout DURATION        helm --timeout (default: 10m)
  --dry-run                 print the helm command and exit; nothing is contacted
  -h, --help                this help
USAGE
}

die() {
    echo "deploy/${CLOUD}.sh: error: $*" >&2
    echo "Run deploy/${CLOUD}.sh --help for the usage." >&2
    exit 2
}

need_value() {  # need_value OPTION ARGC NEXT: the option's value exists and is not another option
    [[ "$2" -ge 2 && "${3:-}" != --* ]] || die "$1 needs a value"
}

deploy_main() {
    local host="${SECURE_AGENT_HOST_NAME:-}" registry="${IMAGE_REGISTRY:-}" tag="${IMAGE_TAG:-}"
    local secret="${EXISTING_SECRET:-}" release="${RELEASE:-secure-agent}" namespace="${NAMESPACE:-secure-agent}"
    local ingress_class="${INGRESS_CLASS:-$DEFAULT_INGRESS_CLASS}" issuer="${CLUSTER_ISSUER:-$DEFAULT_ISSUER}"
    local context="${KUBE_CONTEXT:-}" timeout="10m" dry_run=0
    local -a extra_values=()

    while [[ $# -gt 0 ]]; do
        case "$1" in
            --host) need_value "$1" $# "${2:-}"; host="$2"; shift 2 ;;
            --registry) need_value "$1" $# "${2:-}"; registry="$2"; shift 2 ;;
            --tag) need_value "$1" $# "${2:-}"; tag="$2"; shift 2 ;;
            --existing-secret) need_value "$1" $# "${2:-}"; secret="$2"; shift 2 ;;
            --release) need_value "$1" $# "${2:-}"; release="$2"; shift 2 ;;
            --namespace) need_value "$1" $# "${2:-}"; namespace="$2"; shift 2 ;;
            --ingress-class) need_value "$1" $# "${2:-}"; ingress_class="$2"; shift 2 ;;
            --cluster-issuer) need_value "$1" $# "${2:-}"; issuer="$2"; shift 2 ;;
            --kube-context) need_value "$1" $# "${2:-}"; context="$2"; shift 2 ;;
            -f|--values) need_value "$1" $# "${2:-}"; extra_values+=("$2"); shift 2 ;;
            --timeout) need_value "$1" $# "${2:-}"; timeout="$2"; shift 2 ;;
            --dry-run) dry_run=1; shift ;;
            -h|--help) usage; exit 0 ;;
            *) die "unknown argument: $1" ;;
        esac
    done

    local -a missing=()
    [[ -n "$host" ]] || missing+=("--host (or SECURE_AGENT_HOST_NAME)")
    [[ -n "$registry" ]] || missing+=("--registry (or IMAGE_REGISTRY)")
    [[ -n "$tag" ]] || missing+=("--tag (or IMAGE_TAG)")
    [[ -n "$secret" ]] || missing+=("--existing-secret (or EXISTING_SECRET)")
    if [[ ${#missing[@]} -gt 0 ]]; then
        local joined="${missing[0]}" item
        for item in "${missing[@]:1}"; do
            joined+=", $item"
        done
        die "missing required: $joined"
    fi
    [[ "$host" =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$ ]] \
        || die "--host must be a lowercase DNS name such as mcp.example.com (got: $host)"
    [[ "$registry" =~ ^[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._/-]+)?$ ]] \
        || die "--registry must look like REGISTRY[:PORT][/PATH] without a scheme (got: $registry)"
    [[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "--tag is not a valid image tag (got: $tag)"
    [[ "$secret" =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ ]] || die "--existing-secret is not a valid Secret name (got: $secret)"
    [[ "$release" =~ ^[a-z0-9]([a-z0-9-]{0,51}[a-z0-9])?$ ]] || die "--release is not a valid Helm release name (got: $release)"
    [[ "$namespace" =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] || die "--namespace is not a valid namespace (got: $namespace)"
    [[ -n "$ingress_class" ]] || die "--ingress-class must not be empty"
    [[ -n "$issuer" ]] || die "--cluster-issuer must not be empty"
    local file
    for file in "${extra_values[@]}"; do
        [[ -f "$file" ]] || die "values file not found: $file"
    done

    local -a cmd=(helm upgrade --install "$release" "$REPO_ROOT/charts/secure-agent"
        --namespace "$namespace" --create-namespace
        -f "$DEPLOY_DIR/values/${CLOUD}.yaml")
    for file in "${extra_values[@]}"; do
        cmd+=(-f "$file")
    done
    cmd+=(
        --set-string "publicUrl=https://${host}"
        --set-string "ingress.className=${ingress_class}"
        --set-string "ingress.hosts[0].host=${host}"
        --set-string "ingress.tls[0].secretName=${release}-tls"
        --set-string "ingress.tls[0].hosts[0]=${host}"
        --set-string "ingress.annotations.cert-manager\\.io/cluster-issuer=${issuer}"
        --set-string "mcpApi.image.registry=${registry}"
        --set-string "mcpApi.image.tag=${tag}"
        --set-string "runners.image.registry=${registry}"
        --set-string "runners.image.tag=${tag}"
        --set-string "secrets.existingSecret=${secret}"
        --atomic --wait --timeout "$timeout"
    )
    [[ -z "$context" ]] || cmd+=(--kube-context "$context")

    if [[ "$dry_run" -eq 1 ]]; then
        printf '%q ' "${cmd[@]}" | sed 's/ $//'
        echo
        return 0
    fi
    command -v helm >/dev/null || die "helm is not installed (https://helm.sh/docs/intro/install/)"
    echo "Deploying release ${release} to namespace ${namespace} on ${CLOUD_TITLE} (https://${host}/mcp)" >&2
    "${cmd[@]}"
}
