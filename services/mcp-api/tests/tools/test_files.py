"""Workspace file tools through /mcp in both eras, against a real runner process."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from agent_runner.workspace import read_cache

pytestmark = pytest.mark.anyio

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def text_of(result: dict) -> str:
    return result["content"][0]["text"]


async def test_tools_list_has_schemas_and_annotations(mcp):
    tools = {t["name"]: t for t in (await mcp.request("tools/list"))["result"]["tools"]}
    expected = {
        "read_file", "write_file", "edit_file", "list_directory", "directory_tree", "find_files", "grep",
        "file_info", "create_directory", "move_file", "delete_file",
    }  # fmt: skip
    assert expected <= set(tools)
    for name in expected:
        tool = tools[name]
        assert tool["inputSchema"]["type"] == "object"
        assert tool["outputSchema"]["type"] == "object", name
        assert tool["description"]
    assert tools["read_file"]["annotations"]["readOnlyHint"] is True
    assert tools["delete_file"]["annotations"]["destructiveHint"] is True
    assert tools["write_file"]["annotations"]["idempotentHint"] is True
    assert tools["edit_file"]["annotations"]["idempotentHint"] is False
    assert "path" in tools["read_file"]["inputSchema"]["required"]


async def test_write_then_read_roundtrip(mcp, workspace):
    written = await mcp.call("write_file", path="src/app.py", content="print('hi')\n")
    assert not written.get("isError"), written
    assert written["structuredContent"]["bytes_written"] == 12
    assert (workspace / "src" / "app.py").read_text() == "print('hi')\n"
    read = await mcp.call("read_file", path="src/app.py")
    assert text_of(read) == "print('hi')\n"
    assert read["structuredContent"]["encoding"] == "utf-8"


async def test_hot_reads_never_serve_stale_content(mcp, app, workspace, monkeypatch):
    """Issue 9's staleness test through /mcp: each change follows reads that mcp-api answered itself
    (no runner hop), and the next read_file returns the new content."""
    monkeypatch.setattr(read_cache, "SETTLE_NS", 30_000_000)  # settled after 30 ms, not 1 s
    cache = app.state.services.runners.hot_reads
    old, new = "A" * 64 + "\n", "B" * 64 + "\n"

    async def hot(expected: str) -> None:
        await asyncio.sleep(0.04)
        hits = cache.hits
        for _ in range(2):
            assert text_of(await mcp.call("read_file", path="f.txt")) == expected
        assert cache.hits == hits + 1, "the second read was not answered by mcp-api"

    assert not (await mcp.call("write_file", path="f.txt", content=old)).get("isError")
    await hot(old)
    assert not (await mcp.call("write_file", path="f.txt", content=new)).get("isError")  # write, then read
    assert text_of(await mcp.call("read_file", path="f.txt")) == new
    await hot(new)
    ran = await mcp.call("run_command", shell=f"printf '%s\\n' {old.strip()} > f.txt")  # a command, then read
    assert ran["structuredContent"]["result"]["exit_code"] == 0, ran
    assert text_of(await mcp.call("read_file", path="f.txt")) == old
    await hot(old)
    _rewrite_keeping_size_and_mtime(workspace / "f.txt", new)  # a same-second rewrite
    assert text_of(await mcp.call("read_file", path="f.txt")) == new
    await hot(new)


def _rewrite_keeping_size_and_mtime(path, text: str) -> None:
    before = path.stat()
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(text.encode())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


async def test_read_line_window(mcp, workspace):
    (workspace / "lines.txt").write_text("".join(f"line {i}\n" for i in range(100)))
    read = await mcp.call("read_file", path="lines.txt", offset=10, limit=2)
    assert read["structuredContent"]["content"] == "line 10\nline 11\n"
    assert read["structuredContent"]["total_lines"] == 100


async def test_image_comes_back_as_image_content(mcp, workspace):
    (workspace / "dot.png").write_bytes(PNG)
    read = await mcp.call("read_file", path="dot.png")
    block = read["content"][0]
    assert block["type"] == "image" and block["mimeType"] == "image/png"
    assert base64.b64decode(block["data"]) == PNG


async def test_edit_dry_run_then_apply(mcp, workspace):
    (workspace / "cfg.ini").write_text("debug = true\nport = 1\n")
    edits = [{"old_text": "debug = true", "new_text": "debug = false"}]
    dry = await mcp.call("edit_file", path="cfg.ini", edits=edits, dry_run=True)
    assert (
        "-debug = true" in dry["structuredContent"]["diff"]
        and "+debug = false" in dry["structuredContent"]["diff"]
    )
    assert (workspace / "cfg.ini").read_text().startswith("debug = true")
    done = await mcp.call("edit_file", path="cfg.ini", edits=edits)
    assert done["structuredContent"]["applied"] is True
    assert (workspace / "cfg.ini").read_text() == "debug = false\nport = 1\n"


async def test_ambiguous_edit_changes_nothing(mcp, workspace):
    (workspace / "dup.txt").write_text("x = 1\nx = 1\n")
    result = await mcp.call("edit_file", path="dup.txt", edits=[{"old_text": "x = 1", "new_text": "x = 2"}])
    assert result["isError"] and "ambiguous_match" in text_of(result)
    assert (workspace / "dup.txt").read_text() == "x = 1\nx = 1\n"


async def test_listing_tree_find_grep_info(mcp, workspace):
    (workspace / "pkg").mkdir()
    (workspace / "pkg" / "a.py").write_text("import os\n# TODO fix\n")
    (workspace / "pkg" / "b.txt").write_text("nothing\n")
    listing = await mcp.call("list_directory", path="pkg")
    assert [e["name"] for e in listing["structuredContent"]["entries"]] == ["a.py", "b.txt"]
    tree = await mcp.call("directory_tree", path=".", max_depth=2)
    assert tree["structuredContent"]["tree"][0]["name"] == "pkg"
    found = await mcp.call("find_files", pattern="*.py")
    assert found["structuredContent"]["matches"] == ["pkg/a.py"]
    grep = await mcp.call("grep", pattern="TODO")
    assert grep["structuredContent"]["matches"] == [{"path": "pkg/a.py", "line": 2, "text": "# TODO fix"}]
    info = await mcp.call("file_info", path="pkg/a.py")
    assert info["structuredContent"]["type"] == "file" and info["structuredContent"]["size"] == 21


async def test_mkdir_move_delete(mcp, workspace):
    assert not (await mcp.call("create_directory", path="a/b/c")).get("isError")
    assert (workspace / "a" / "b" / "c").is_dir()
    (workspace / "a" / "f.txt").write_text("f")
    moved = await mcp.call("move_file", source="a/f.txt", destination="a/b/g.txt")
    assert not moved.get("isError"), moved
    assert (workspace / "a" / "b" / "g.txt").read_text() == "f"
    refused = await mcp.call("delete_file", path="a")
    assert refused["isError"]
    assert (await mcp.call("delete_file", path="a", recursive=True))["structuredContent"]["deleted"] >= 3
    assert not (workspace / "a").exists()


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("../etc/passwd", "invalid_path"),
        ("/etc/passwd", "invalid_path"),
        ("a\x00b", "invalid_path"),
        ("missing.txt", "not_found"),
    ],
)
async def test_bad_paths_get_specific_errors(mcp, workspace, path, code):
    result = await mcp.call("read_file", path=path)
    assert result["isError"] is True
    assert f"[{code}]" in text_of(result)


async def test_symlink_out_of_workspace_is_refused(mcp, workspace, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("SECRET")
    os.symlink(outside, workspace / "link.txt")
    result = await mcp.call("read_file", path="link.txt")
    assert result["isError"] and "symlink_refused" in text_of(result)
    assert "SECRET" not in str(result)


async def test_fifo_does_not_hang(mcp, workspace):
    os.mkfifo(workspace / "pipe")
    result = await mcp.call("read_file", path="pipe")
    assert result["isError"] and "not_regular_file" in text_of(result)


async def test_failed_write_keeps_old_file(mcp, workspace):
    (workspace / "keep.txt").write_text("original")
    bad = await mcp.call("write_file", path="keep.txt", content="!!!not base64!!!", encoding="base64")
    assert bad["isError"]
    assert (workspace / "keep.txt").read_text() == "original"
    assert sorted(p.name for p in workspace.iterdir()) == ["keep.txt"]


async def test_hardlinked_target_is_refused(mcp, workspace, tmp_path):
    (workspace / "h.txt").write_text("x")
    os.link(workspace / "h.txt", tmp_path / "other-link")
    result = await mcp.call("write_file", path="h.txt", content="y")
    assert result["isError"] and "hardlinked_file" in text_of(result)
    assert (tmp_path / "other-link").read_text() == "x"


async def test_named_workspace_and_bad_workspace_name(mcp, settings):
    ok = await mcp.call("write_file", path="n.txt", content="n", workspace="proj-1")
    assert not ok.get("isError")
    assert (settings.workspaces_dir / "dev" / "proj-1" / "n.txt").read_text() == "n"
    bad = await mcp.call("list_directory", workspace="../escape")
    assert bad["isError"] and "workspace" in text_of(bad)
