"""AgentProfile: operator-style config (ARCHITECTURE decision 5).

model.py is the one source (pydantic); crd.py generates the CRD from it; files.py reads the same
documents from `config/profiles/*.yaml` locally; watch.py follows AgentProfile custom resources on
Kubernetes. Both feed a `ProfileRegistry` (registry.py) that the rest of the app reads from.
"""
