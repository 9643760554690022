"""Protocol revisions this server speaks, as the SDK negotiates them."""

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

MODERN_REVISIONS = list(MODERN_PROTOCOL_VERSIONS)
# 2024-11-05 is reachable through initialize too, but it was defined for the old HTTP+SSE transport.
LEGACY_REVISIONS = sorted(HANDSHAKE_PROTOCOL_VERSIONS, reverse=True)
