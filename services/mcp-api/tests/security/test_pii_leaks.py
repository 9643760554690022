"""Secrets and PII that `StorageRedactor.value` stored in clear: in dict keys, in bytes and sets (and
any object) nested deeper than its depth limit (returned as they were, then written by the audit
log's `json.dumps(default=str)`), and bytes whose repr escapes split a secret. Each gap is attacked
through the real writer, `AuditLog.record` (the stored row, what `events()` returns, the chain still
verifying), and in unit tests of the redactor; what has nothing to redact is stored as before."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_runner.observability import redaction
from mcp_api.security.audit import AuditLog
from mcp_api.security.pii import MAX_DEPTH, StorageRedactor
from mcp_api.settings import Settings
from mcp_api.store.store import Store

REGISTERED = "registered-secret-0123456789"
SECRET, MARKER = "sk-" + "P" * 40, "P" * 40
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
MARKERS = (MARKER, REGISTERED, "jane.doe", "4111", "hunter2", "CUST-123456")


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    redaction.forget_secrets()
    redaction.register_secret(REGISTERED)
    yield
    redaction.forget_secrets()


@pytest.fixture
def redactor() -> StorageRedactor:
    return StorageRedactor(Settings(privacy={"pii_patterns": [r"CUST-\d{6}"]}).privacy)


# The audit chain's SHA-256 hex digests look random: about one in 1,100 holds "4111" by chance.
_DIGEST = re.compile(r"\b[0-9a-f]{64}\b")


def assert_clean(value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    leaked = [marker for marker in MARKERS if marker in _DIGEST.sub("<sha256>", text)]
    assert not leaked, (leaked, text)


def deep(value: Any, levels: int, shell: str = "list") -> Any:
    for _ in range(levels):
        value = {"list": lambda v: [v], "dict": lambda v: {"k": v}, "tuple": lambda v: (v,)}[shell](value)
    return value


class Shows:
    def __str__(self) -> str:
        return f"Shows(key={SECRET}, mail={EMAIL})"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")

    def __repr__(self) -> str:
        return f"Unprintable({SECRET})"


LEAVES = {
    "bytes": f"token: {SECRET}".encode(),
    "bytearray": bytearray(f"mail {EMAIL}".encode()),
    "set": {SECRET},
    "frozenset": frozenset([REGISTERED]),
    "object": Shows(),
    "unprintable": Unprintable(),
}


# --- through the audit log -------------------------------------------------------------------------
@pytest.fixture
async def audit(tmp_path: Path, redactor: StorageRedactor):
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}")
    await store.create_schema()
    yield AuditLog(store, redactor)
    await store.aclose()


def stored_rows(tmp_path: Path) -> str:
    conn = sqlite3.connect(tmp_path / "audit.db")
    try:
        return json.dumps(conn.execute("SELECT * FROM audit_events").fetchall())
    finally:
        conn.close()


ATTACKS: dict[str, Any] = {
    "secret key": {SECRET: "value"},
    "registered key": {f"id {REGISTERED}": 1},
    "email key": {EMAIL: "x"},
    "card key": {CARD: "x"},
    "custom pii key": {"CUST-123456": "x"},
    "nested key": {"a": [{"b": {f"Bearer {SECRET}": True}}]},
    "non-str key": {(SECRET,): 1},
    "bytes key": {f"password={SECRET}".encode(): 1},
    **{f"deep {name}": deep(leaf, MAX_DEPTH + 2) for name, leaf in LEAVES.items()},
    **{f"deep {name} in dict": deep(leaf, MAX_DEPTH + 2, "dict") for name, leaf in LEAVES.items()},
    **{f"at the limit {name}": deep(leaf, MAX_DEPTH) for name, leaf in LEAVES.items()},
    **{f"shallow {name}": {"v": leaf} for name, leaf in LEAVES.items()},
    "bytes split by escapes": {"note": b"password=hunter2\xff\xfehunter2"},
    "secret-named key, bytes": {"password": b"hunter2hunter2"},
}


@pytest.mark.anyio
@pytest.mark.parametrize("details", ATTACKS.values(), ids=ATTACKS.keys())
async def test_audit_record_stores_no_secret(audit, tmp_path, details):
    await audit.record("test.leak", "cli:ops", "acme", "target", details)
    assert_clean(stored_rows(tmp_path))
    (stored,) = await audit.events()
    assert_clean(stored["details"])
    assert (await audit.verify()).ok


@pytest.mark.anyio
async def test_audit_record_keeps_keys_apart(audit):
    await audit.record("test.keys", "cli:ops", "acme", "t", {SECRET: 1, "sk-" + "Q" * 40: 2, "sk-[REDACTED]": 3})
    (stored,) = await audit.events()
    assert stored["details"] == {"sk-[REDACTED]": 3, "sk-[REDACTED]#2": 1, "sk-[REDACTED]#3": 2}


# --- the redactor ----------------------------------------------------------------------------------
def test_keys_are_redacted_as_text_and_numbered(redactor):
    out = redactor.value({SECRET: 1, "sk-" + "Q" * 40: 2, EMAIL: 3, "ok": 4, "[REDACTED:pii]": 5})
    assert out == {"sk-[REDACTED]": 1, "sk-[REDACTED]#2": 2, "[REDACTED:pii]#2": 3, "ok": 4, "[REDACTED:pii]": 5}
    assert list(out) == ["sk-[REDACTED]", "sk-[REDACTED]#2", "[REDACTED:pii]#2", "ok", "[REDACTED:pii]"]


def test_a_secret_named_key_still_hides_its_value_after_its_name_is_redacted(redactor):
    assert redactor.value({f"{EMAIL}_password": "plain"}) == {"[REDACTED:pii]_password": "[REDACTED]"}


@pytest.mark.parametrize("levels", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 3 * MAX_DEPTH])
@pytest.mark.parametrize("shell", ["list", "dict", "tuple"])
@pytest.mark.parametrize("name", LEAVES)
def test_no_leaf_is_returned_unredacted_at_any_depth(redactor, name, shell, levels):
    out = redactor.value(deep(LEAVES[name], levels, shell))
    assert_clean(out)
    json.dumps(out)  # JSON-native: nothing left for json.dumps(default=str) to render


@pytest.mark.parametrize("shell", ["list", "dict", "tuple"])
def test_containers_past_the_limit_are_truncated(redactor, shell):
    out = redactor.value(deep({SECRET}, MAX_DEPTH + 1, shell))
    inner = out
    for _ in range(MAX_DEPTH):
        inner = inner["k"] if shell == "dict" else inner[0]
    assert inner == "[TRUNCATED]"
    walked = "list" if shell == "tuple" else shell  # tuples are stored as lists
    assert redactor.value(deep({"k": 1}, MAX_DEPTH, shell)) == deep("[TRUNCATED]", MAX_DEPTH, walked)


def test_bytes_sets_and_objects(redactor):
    assert redactor.value(b"note " + SECRET.encode()) == "note sk-[REDACTED]"
    assert redactor.value(b"password=hunter2\xffhunter2") == "password=[REDACTED]"
    assert redactor.value({"password": b"hunter2"}) == {"password": "[REDACTED]"}
    assert redactor.value({"password": b""}) == {"password": ""}
    assert redactor.value({"ok", "ok"}) == ["ok"]
    assert redactor.value(frozenset([EMAIL])) == ["[REDACTED:pii]"]
    assert redactor.value(Shows()) == "Shows(key=sk-[REDACTED], mail=[REDACTED:pii])"
    assert redactor.value(Unprintable()) == "Unprintable(sk-[REDACTED])"


def test_output_without_anything_to_redact_is_unchanged(redactor):
    data = {"n": 1, "f": 2.5, "b": True, "none": None, "s": "text", "l": [1, "a", (2, "b")],
            "d": {"x": {"y": []}}, 7: "int key", "input_tokens": 42, "password": "", "token": None}  # fmt: skip
    assert redactor.value(data) == {"n": 1, "f": 2.5, "b": True, "none": None, "s": "text",
                                    "l": [1, "a", [2, "b"]], "d": {"x": {"y": []}}, "7": "int key",
                                    "input_tokens": 42, "password": "", "token": None}  # fmt: skip
    assert redactor.value({"password": "hunter2hunter2", "nested": [{"password": "x"}]}) == {
        "password": "[REDACTED]", "nested": [{"password": "[REDACTED]"}]}  # fmt: skip
    assert redactor.value(deep("s", MAX_DEPTH + 5)) == deep("[TRUNCATED]", MAX_DEPTH)


def test_a_secret_named_key_loses_a_list_or_mapping_value_whole():
    redactor = StorageRedactor()
    stored = redactor.value({"password": ["hunter2"], "api_token": {"inner": "plain"}, "secret_count": 3})
    assert stored == {"password": "[REDACTED]", "api_token": "[REDACTED]", "secret_count": 3}
