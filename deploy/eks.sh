#!/usr/bin/env bash
# Deploy secure-agent to Amazon EKS: helm upgrade --install of charts/secure-agent with deploy/values/eks.yaml.
#
#   deploy/eks.sh --host mcp.example.com --registry REGISTRY --tag 0.1.0 --existing-secret secure-agent-secrets
#   deploy/eks.sh ... --dry-run        # print the helm command only
#   deploy/eks.sh --help
#
# Before: the images pushed to REGISTRY (secure-agent/mcp-api, secure-agent/agent-runner), cert-manager
# with the ClusterIssuer, an ingress controller, PostgreSQL and Redis reachable from the cluster, and the
# Secret named by --existing-secret (keys: database-url, redis-url, request-state-keys, tenant-hash-key,
# api-key; see config/env/cluster.env.example for what each holds).
# EKS: ingress-nginx (class nginx) behind an NLB keeps MCP streams unbuffered; with the AWS Load Balancer
# Controller use --ingress-class alb plus your own -f values (idle timeout >= 3600 s). TLS: cert-manager.
set -euo pipefail

CLOUD=eks
CLOUD_TITLE="Amazon EKS"
DEFAULT_INGRESS_CLASS=nginx
DEFAULT_ISSUER=letsencrypt-prod
# shellcheck source=deploy/lib/helm-deploy.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/helm-deploy.sh"

deploy_main "$@"
