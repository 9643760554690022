"""secure-agent mcp-api."""

__version__ = "0.1.0"
