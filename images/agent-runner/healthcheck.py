"""HEALTHCHECK of the agent-runner image: GET /v1/health of the runner that is PID 1.

The runner's address and token file are read from PID 1's command line (`serve --host H --port P`
or `--uds PATH`, `--token-file F`), so the check follows whatever the pod or `docker run` passed.
With a readable token file the runner must answer 200; without one (`--token-stdin`), any answer
from the runner (401 included) proves it is serving. Exit 0 healthy, 1 not. Standard library only.
"""

from __future__ import annotations

import http.client
import socket
import sys

TIMEOUT_S = 4.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT_S)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT_S)
        self.sock.connect(self._path)


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def main(cmdline_path: str = "/proc/1/cmdline") -> int:
    with open(cmdline_path, "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    uds, host, port = _option(argv, "--uds"), _option(argv, "--host"), _option(argv, "--port")
    token = None
    token_file = _option(argv, "--token-file")
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.readline().strip() or None
        except OSError:
            token = None
    if uds:
        conn: http.client.HTTPConnection = _UnixConnection(uds)
    elif port:
        target = "127.0.0.1" if host in (None, "0.0.0.0", "") else "::1" if host == "::" else host  # noqa: S104
        conn = http.client.HTTPConnection(target, int(port), timeout=TIMEOUT_S)
    else:
        print("healthcheck: PID 1 is not an agent-runner serve command", file=sys.stderr)
        return 1
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        conn.request("GET", "/v1/health", headers=headers)
        status = conn.getresponse().status
    except OSError as exc:
        print(f"healthcheck: runner not answering: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    healthy = status == 200 or (token is None and status == 401)
    if not healthy:
        print(f"healthcheck: /v1/health answered {status}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
