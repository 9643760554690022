"""Kubernetes plumbing shared by the runner backend and the AgentProfile watch."""
