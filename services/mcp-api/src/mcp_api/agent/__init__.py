"""The SecureAgent: an LLM tool loop that works in the caller's sandboxed workspace."""

# Conversations join the per-tenant export/erase (security/privacy.py's registry).
from . import tenant_data as _tenant_data  # noqa: E402,F401
