#!/usr/bin/env bash
# Deploy secure-agent to Google Kubernetes Engine (GKE): helm upgrade --install of charts/secure-agent with deploy/values/gke.yaml.
#
#   deploy/gke.sh --host mcp.example.com --registry REGISTRY --tag 0.1.0 --existing-secret secure-agent-secrets
#   deploy/gke.sh ... --dry-run        # print the helm command only
#   deploy/gke.sh --help
#
# Before: the images pushed to REGISTRY (secure-agent/mcp-api, secure-agent/agent-runner), cert-manager
# with the ClusterIssuer, an ingress controller, PostgreSQL and Redis reachable from the cluster, and the
# Secret named by --existing-secret (keys: database-url, redis-url, request-state-keys, tenant-hash-key,
# api-key; see config/env/cluster.env.example for what each holds).
# GKE: ingress-nginx (class nginx); GKE's own "gce" class needs a BackendConfig with timeoutSec >= 3600
# for MCP streams. TLS: cert-manager. Runner pods may use GKE Sandbox (gVisor): see deploy/values/gke.yaml.
set -euo pipefail

CLOUD=gke
CLOUD_TITLE="Google Kubernetes Engine (GKE)"
DEFAULT_INGRESS_CLASS=nginx
DEFAULT_ISSUER=letsencrypt-prod
# shellcheck source=deploy/lib/helm-deploy.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/helm-deploy.sh"

deploy_main "$@"
