"""AgentProfile YAML files for tests that run the real app with a profile directory."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from mcp_api.settings import Settings
from mcp_helpers import TEST_KEY

POLL_S = 0.05


def write_profile(directory: Path, name: str, spec: str) -> None:
    path = directory / f"{name}.yaml"
    doc = f"apiVersion: secure-agent.dev/v1alpha1\nkind: AgentProfile\nmetadata:\n  name: {name}\nspec:\n"
    path.write_text(doc + textwrap.indent(textwrap.dedent(spec).strip() + "\n", "  "))
    st = path.stat()  # a distinct mtime even on coarse-grained filesystems
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def profile_settings(tmp_path: Path, profiles_dir: Path, **extra) -> Settings:
    """The app's settings with its own poller following `profiles_dir` every POLL_S."""
    return Settings(
        data_dir=tmp_path / "data", dev_api_key=TEST_KEY, runner={"idle_timeout_s": 60},
        profiles={"directory": str(profiles_dir), "poll_interval_s": POLL_S}, **extra,
    )  # fmt: skip
