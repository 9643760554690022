"""Kubernetes runner backend: one agent-runner pod per workspace, a warm pool, and a reconciler.

pods.py builds the pod (pure), pss.py checks it against Pod Security "restricted", manifests.py
builds the runner NetworkPolicy and RBAC, launcher.py talks to the API, pool.py keeps warm pods,
reconcile.py removes orphans, backend.py is the RunnerBackend.
"""
