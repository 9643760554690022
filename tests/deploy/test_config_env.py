"""config/env/*: generated from the settings model, complete, loadable, and free of secrets.

The files are written by `secure-agent env-files` (mcp_api.cli.envfiles). These tests prove that:
- the committed files are exactly what the model generates now (a new or changed setting that was not
  regenerated fails here, as does a hand edit), and the `--check` mode catches drift;
- every field of Settings (nested models as `__`) is listed once per file, with a meaning;
- every variable named in the files (active or commented) resolves to a real field: Settings has
  `extra="ignore"`, so a typo'd SECURE_AGENT_ variable would otherwise be dropped silently;
- each file loads into Settings through pydantic-settings' own dotenv reader without an error, and its
  active values are the ones Settings ends up with;
- the commented defaults, uncommented, parse back to exactly the model's defaults;
- secrets are never written: each appears commented out with an empty value.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from dotenv import dotenv_values
from mcp_api.cli import envfiles
from mcp_api.cli import main as cli
from mcp_api.settings import Settings

REPO = Path(__file__).resolve().parents[2]
ENV_DIR = REPO / "config" / "env"
FILES = [ENV_DIR / p.filename for p in envfiles.PROFILES]
LINE = re.compile(r"^(?P<comment># )?(?P<name>SECURE_AGENT_[A-Z0-9_]+)=(?P<value>.*)$")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read the process environment: none of the developer's SECURE_AGENT_* may leak in."""
    import os

    for name in list(os.environ):
        if name.startswith("SECURE_AGENT_") or name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # relative defaults (data_dir) resolve the same for both sides


def assignments(path: Path) -> list[tuple[bool, str, str]]:
    """(active, NAME, raw value) for every SECURE_AGENT_ line, commented or not."""
    found = []
    for line in path.read_text().splitlines():
        match = LINE.match(line)
        if match:
            found.append((match["comment"] is None, match["name"], match["value"]))
    return found


def test_profiles_cover_the_three_modes() -> None:
    assert {p.name for p in FILES} == {"development.env", "production.env.example", "cluster.env.example"}
    for path in FILES:
        assert path.is_file(), f"{path} missing: run `make env-files`"


def test_committed_files_are_what_the_model_generates() -> None:
    stale = envfiles.run(ENV_DIR, check=True)
    assert not stale, f"out of date: {stale}; run `make env-files` (secure-agent env-files)"
    result = CliRunner().invoke(cli, ["env-files", "--dir", str(ENV_DIR), "--check"])
    assert result.exit_code == 0, result.output


def test_check_mode_catches_drift_and_regeneration_fixes_it(tmp_path: Path) -> None:
    copy = tmp_path / "env"
    shutil.copytree(ENV_DIR, copy)
    target = copy / "development.env"
    target.write_text(target.read_text().replace("# SECURE_AGENT_PORT=8080", "# SECURE_AGENT_PORT=9999"))
    (copy / "cluster.env.example").unlink()

    result = CliRunner().invoke(cli, ["env-files", "--dir", str(copy), "--check"])
    assert result.exit_code == 1
    assert "development.env" in result.output and "cluster.env.example" in result.output
    assert "9999" in target.read_text(), "--check must not write"

    assert CliRunner().invoke(cli, ["env-files", "--dir", str(copy)]).exit_code == 0
    assert CliRunner().invoke(cli, ["env-files", "--dir", str(copy), "--check"]).exit_code == 0
    assert target.read_text() == (ENV_DIR / "development.env").read_text()


def test_generator_runs_as_a_module_entry_point() -> None:
    result = CliRunner().invoke(envfiles.env_files, ["--dir", str(ENV_DIR), "--check"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_setting_is_listed_once_with_a_meaning(path: Path) -> None:
    names = [name for _, name, _ in assignments(path)]
    expected = [leaf.env for leaf in envfiles.leaves()]
    assert sorted(names) == sorted(expected)
    assert len(names) == len(set(names))
    # Cross-check the walk itself: nested models must have become `__` groups.
    for sample in ("SECURE_AGENT_RUNNER__BACKEND", "SECURE_AGENT_SANDBOX__TIMEOUT_S",
                   "SECURE_AGENT_AGENT__POLICY__COMMAND_DENY", "SECURE_AGENT_RATE_LIMITS__KEY_PER_S"):  # fmt: skip
        assert sample in names
    text = path.read_text()
    for leaf in envfiles.leaves():
        assert leaf.description, f"{leaf.dotted} has no description in the model : add Field(description=...)"
        block = text.split(f"{leaf.env}=")[0].rsplit("\n\n", 1)[-1]
        assert "# type: " in block and "default: " in block, (leaf.env, block)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_named_variable_is_a_real_setting(path: Path) -> None:
    unknown = [name for _, name, _ in assignments(path) if not envfiles.resolves(name)]
    assert not unknown, f"{path.name} names variables Settings does not have: {unknown}"


def test_a_typo_is_caught_by_the_name_check_although_settings_ignore_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert Settings.model_config["extra"] == "ignore", "if Settings forbid extras, load-and-fail suffices"
    typo = tmp_path / "typo.env"
    typo.write_text("SECURE_AGENT_RUNER__BACKEND=kubernetes\nSECURE_AGENT_SANDBOX__TIMEOUT=5\n")
    settings = Settings(_env_file=typo)  # accepted silently: that is why the names are checked
    assert settings.runner.backend == "local"
    assert [envfiles.resolves(name) for _, name, _ in assignments(typo)] == [False, False]
    # ... while real names resolve, at every depth, and a nested model alone is not a variable.
    assert envfiles.resolves("SECURE_AGENT_AGENT__POLICY__COMMAND_DENY")
    assert not envfiles.resolves("SECURE_AGENT_AGENT__POLICY")
    assert not envfiles.resolves("SECURE_AGENT_PORT__X")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_file_loads_into_settings_with_its_values(path: Path) -> None:
    settings = Settings(_env_file=path)  # pydantic-settings' own dotenv reader, as in production
    active = dotenv_values(path)
    assert active, f"{path.name} sets nothing"
    assert all(value not in ("", None) for value in active.values())
    # The profile's values are what Settings holds now (compare through the same renderer).
    profile = next(p for p in envfiles.PROFILES if p.filename == path.name)
    for dotted, value in profile.values.items():
        held = settings
        for part in dotted.split("."):
            held = getattr(held, part)
        if dotted == "data_dir":
            assert held == Path(value).resolve()
        else:
            assert envfiles.format_value(held) == envfiles.format_value(value), dotted


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_commented_defaults_parse_back_to_the_model_defaults(path: Path, tmp_path: Path) -> None:
    defaults_only = tmp_path / "defaults.env"
    defaults_only.write_text(
        "".join(f"{name}={value}\n" for active, name, value in assignments(path) if not active and value)
    )
    assert Settings(_env_file=defaults_only).model_dump(mode="json") == Settings().model_dump(mode="json")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_secrets_are_never_written(path: Path) -> None:
    lines = {name: (active, value) for active, name, value in assignments(path)}
    secrets = [leaf for leaf in envfiles.leaves() if leaf.secret]
    names = {leaf.env for leaf in secrets}
    for must in ("SECURE_AGENT_DATABASE_URL", "SECURE_AGENT_DEV_API_KEY", "SECURE_AGENT_REDIS_URL",
                 "SECURE_AGENT_REQUEST_STATE_KEYS", "SECURE_AGENT_LOGGING__TENANT_HASH_KEY",
                 "SECURE_AGENT_TRACING__OTLP_HEADERS", "SECURE_AGENT_AGENT__PROVIDERS"):  # fmt: skip
        assert must in names, f"{must} should count as a secret"
    for name in names:
        assert lines[name] == (False, ""), f"{path.name}: secret {name} has a value or is active"
    assert not re.search(r"(?i)(password|api_key|secret)\s*[=:]\s*[A-Za-z0-9+/]{12,}", path.read_text())


def test_production_examples_name_their_required_secrets() -> None:
    for profile in envfiles.PROFILES:
        text = (ENV_DIR / profile.filename).read_text()
        for dotted in profile.required_secrets:
            env = envfiles.PREFIX + dotted.replace(".", "__").upper()
            assert "[secret] REQUIRED in this profile" in text.split(f"# {env}=")[0].rsplit("\n\n", 1)[-1]
    cluster = (ENV_DIR / "cluster.env.example").read_text()
    assert "SECURE_AGENT_RUNNER__BACKEND=kubernetes" in cluster
    assert "postgresql+asyncpg://" in cluster
    assert "SECURE_AGENT_LOGGING__FORMAT=text" in (ENV_DIR / "development.env").read_text()
