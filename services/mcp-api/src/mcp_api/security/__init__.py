"""Security controls of mcp-api: rate limits, request limits, headers/CORS, audit log, retention and privacy.

Nothing here is imported by `mcp_api.settings` except `config` (pydantic models only).
"""
