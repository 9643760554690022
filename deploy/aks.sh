#!/usr/bin/env bash
# Deploy secure-agent to Azure Kubernetes Service (AKS): helm upgrade --install of charts/secure-agent with deploy/values/aks.yaml.
#
#   deploy/aks.sh --host mcp.example.com --registry REGISTRY --tag 0.1.0 --existing-secret secure-agent-secrets
#   deploy/aks.sh ... --dry-run        # print the helm command only
#   deploy/aks.sh --help
#
# Before: the images pushed to REGISTRY (secure-agent/mcp-api, secure-agent/agent-runner), cert-manager
# with the ClusterIssuer, an ingress controller, PostgreSQL and Redis reachable from the cluster, and the
# Secret named by --existing-secret (keys: database-url, redis-url, request-state-keys, tenant-hash-key,
# api-key; see config/env/cluster.env.example for what each holds).
# AKS: the application routing add-on (managed NGINX, class webapprouting.kubernetes.azure.com) honours the
# chart's nginx streaming annotations. TLS: cert-manager.
set -euo pipefail

CLOUD=aks
CLOUD_TITLE="Azure Kubernetes Service (AKS)"
DEFAULT_INGRESS_CLASS=webapprouting.kubernetes.azure.com
DEFAULT_ISSUER=letsencrypt-prod
# shellcheck source=deploy/lib/helm-deploy.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/helm-deploy.sh"

deploy_main "$@"
