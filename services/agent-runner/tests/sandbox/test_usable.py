"""What a command can still do: the confinement must leave a working shell and toolchain."""

from __future__ import annotations

import os
import shutil

import anyio
import pytest
from agent_runner.sandbox.spawn import run_command

pytestmark = pytest.mark.anyio


async def test_identity_and_hardening(policy, helpers):
    code = (
        "import os\n"
        "fields = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
        "print(os.getuid(), os.getgid(), os.getgroups(), *(fields[k].strip() for k in ('NoNewPrivs', 'Seccomp', 'CapEff', 'CapBnd')))"
    )
    result = await run_command(policy, helpers.python(code))
    assert result.stdout.split() == ["65534", "65534", "[]", "1", "2", "0000000000000000", "0000000000000000"]


async def test_environment_is_only_the_policys(policy, monkeypatch):
    result = await run_command(policy, ["env"], env={"CI": "true"})
    env = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "CI": "true",
        "HOME": str(policy.workspace),
        "TMPDIR": str(policy.tmp_dir),
    }


async def test_shell_basics(policy):
    (policy.workspace / "sub").mkdir()
    script = 'cd "$HOME" && echo data > "$TMPDIR/t" && cat "$TMPDIR/t" && mkdir -p a/b && echo ok > a/b/f && mv a/b/f a/g && ls a && cat a/g && rm -r a'
    result = await run_command(policy, shell=script)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "data\nb\ng\nok\n"
    sub = await run_command(policy, ["pwd"], cwd="sub")
    assert sub.stdout == f"{policy.workspace}/sub\n"


async def test_stdin_is_passed(policy):
    result = await run_command(policy, ["cat"], stdin=b"hello\n" * 20000)
    assert result.stdout == "hello\n" * 20000


async def test_exit_codes_signals_and_missing_programs(policy):
    assert (await run_command(policy, shell="exit 7")).exit_code == 7
    killed = await run_command(policy, shell="kill -TERM $$; sleep 5")
    assert (killed.exit_code, killed.signal) == (None, "SIGTERM")
    missing = await run_command(policy, ["no-such-program-sa"])
    assert missing.exit_code == 127
    assert missing.stderr == "sandbox: no-such-program-sa: command not found\n"


async def test_files_written_by_commands_belong_to_the_runner_side(policy, mode):
    await run_command(policy, shell="echo made > made.txt && mkdir made-dir")
    st = os.stat(policy.workspace / "made.txt")
    # Through the idmapped mount they are stored as the workspace owner (the runner); without
    # one, the command's uid owns the workspace and what it makes.
    assert st.st_uid == (0 if mode == "full" else 65534)
    assert (policy.workspace / "made.txt").read_text() == "made\n"
    (policy.workspace / "from-runner.txt").write_text("runner\n")
    edited = await run_command(policy, shell="echo more >> from-runner.txt && cat from-runner.txt")
    if mode == "full":
        assert edited.stdout == "runner\nmore\n"  # the runner's files are the command's too
    else:
        # Emulated here with a root runner: its 0644 file is not the sandbox uid's. (A real
        # unprivileged runner and its commands share one uid.)
        assert edited.exit_code != 0 and "Permission denied" in edited.stderr


@pytest.mark.parametrize("mode", ["full"], indirect=True)
async def test_namespaced_view(policy, helpers, minimal_base):
    host_file = minimal_base / "visible-on-the-host"
    host_file.write_text("x")
    code = (
        "import os, socket, sys, multiprocessing as mp\n"
        "lock = mp.Lock()\n"  # a POSIX semaphore in /dev/shm, which is the private tmp dir
        "with lock: pass\n"
        "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "print(socket.gethostname(), pids[:2], os.path.exists(sys.argv[1]))"
    )
    result = await run_command(policy, [*helpers.python(code), str(host_file)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "sandbox [1, 2] False\n"  # init and the command; /tmp is empty


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
async def test_git_works_in_the_workspace(policy):
    script = "git init -q . && git -c user.email=a@b -c user.name=n commit -q --allow-empty -m first && git log --format=%s"
    result = await run_command(policy, shell=script)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "first\n"


async def test_concurrent_commands(policy):
    results = []

    async def one(i: int) -> None:
        results.append(await run_command(policy, ["sh", "-c", f"echo {i}"]))

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(one, i)
    assert sorted(int(r.stdout) for r in results) == list(range(8))
