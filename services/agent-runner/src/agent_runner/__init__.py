"""secure-agent runner: owns one workspace, serves file operations over the runner protocol."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agent-runner")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+source"
