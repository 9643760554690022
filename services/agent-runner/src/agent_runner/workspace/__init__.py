"""Workspace file operations: safe path resolution (paths), per-op file functions (files),
tree walks and search (search)."""
