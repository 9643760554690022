"""Every shell command and config snippet in README.md and docs/**/*.md is validated against the code
(docs_check_lib explains each rule). One test per file, found by glob: docs added later are checked too."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import docs_check_lib as lib  # noqa: E402

DOCS = lib.doc_files()


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(lib.REPO)) for p in DOCS])
def test_doc_is_in_step_with_the_code(path: Path) -> None:
    problems = lib.check_file(path)
    assert not problems, "\n" + "\n".join(map(str, problems))


def test_the_glob_finds_the_guides() -> None:
    names = {str(p.relative_to(lib.REPO)) for p in DOCS}
    assert {"README.md", "docs/clients/claude-code.md", "docs/deployment.md"} <= names


BAD = """# Bad doc

See [missing](nope/missing.md) and `services/mcp-api/src/mcp_api/nothing_here.py`.
Run `secure-agent keys rename <key_id>` or `make chart-lint` (real); set `SECURE_AGENT_NO_SUCH_SETTING=1` or `SECURE_AGENT_RATE_LIMITS__NOPE`; fine: `SECURE_AGENT_SANDBOX__TIMEOUT_S`.
Open http://localhost:8080/nowhere (but http://localhost:8080/health is real).
See [auth](security.md#no-such-heading), [fine](security.md#rate-limits), [here](#bad-doc), [gone](#nowhere).

```json
{"mcpServers": {"a": 1,}}
```

```yaml
a: [1, 2
```

```sh
make no-such-target
uv run secure-agent keys rename --tenant acme
uv run secure-agent keys create --tenant acme --scope root
secure-agent keys list --jsn
npx -y mcp-remote@0.14.0 http://localhost:8080/mcp
frobnicate --all
SECURE_AGENT_PORT=notaport uv run secure-agent serve
```

## Helm on Mars (planned)

`charts/secure-agent/values-mars.yaml` and [it](../charts/secure-agent/values-mars.yaml) are to come.
"""


def test_the_check_catches_each_kind_of_mistake() -> None:
    # Checked as if it were docs/bad.md, without writing it there (other test runs glob docs/).
    found = [str(p) for p in lib.check_file(lib.REPO / "docs" / "bad.md", text=BAD)]
    text = "\n".join(found)
    expected = [
        ":3: link target nope/missing.md does not exist",
        ":3: `services/mcp-api/src/mcp_api/nothing_here.py` does not exist",
        ":4: secure-agent keys rename: no such subcommand",
        ":4: SECURE_AGENT_NO_SUCH_SETTING: no settings field 'no_such_setting'",
        ":4: SECURE_AGENT_RATE_LIMITS__NOPE: no settings field 'nope' in RateLimitSettings",
        ":5: http://localhost:8080/nowhere: the app has no such route",
        ":6: link target security.md#no-such-heading: no heading with anchor #no-such-heading",
        ":6: link target #nowhere: no heading with anchor #nowhere in this file",
        ":9: json block does not parse",
        ":13: yaml block does not parse",
        ":17: make no-such-target: no such target",
        ":18: secure-agent keys rename: no such subcommand",
        ":19: secure-agent keys create --scope root: not one of",
        ":20: secure-agent keys list: no option --jsn",
        ":21: npx mcp-remote@0.14.0: tools/node/package.json pins mcp-remote@0.15.1",
        ":22: frobnicate: not a known program",
        ":17: these settings do not validate: ['SECURE_AGENT_PORT']",
    ]
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not reported; got:\n{text}"
    assert "SANDBOX__TIMEOUT_S:" not in text and "localhost:8080/health" not in text
    assert "values-mars" not in text  # a (planned) section's paths need not exist yet
    assert len(found) == len(expected), text
