"""A private redis-server for a test: its own port (or unix socket) and directory, AOF always.

``RedisServer(directory).start()`` runs ``redis-server`` bound to 127.0.0.1 only, with
``appendonly yes``, ``appendfsync always`` and no RDB snapshots, its files in ``directory``. It
returns once the server logged that it accepts connections and answered PING (no sleep).
``kill()`` is a SIGKILL, ``restart()`` starts it again on the same port and directory (the AOF
is replayed), ``pause()``/``resume()`` are SIGSTOP/SIGCONT, ``stop()`` always cleans up.

``require_redis()`` skips the calling test when no redis-server (or redis-py) is installed,
naming what to install, and fails it instead when ``SWARM_REQUIRE_REDIS=1`` (CI).

Also runs as ``python tests/redis_server.py DIR``: starts one and prints its URL until Ctrl-C.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

REQUIRE_ENV = "SWARM_REQUIRE_REDIS"
_READY_SECONDS = 30.0  # a redis-server that has not logged "Ready" by then is broken


def missing_reason() -> Optional[str]:
    """Why Redis tests cannot run here, or None when they can."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt install redis-server; CI sets SWARM_REQUIRE_REDIS=1)"
    try:
        import redis  # noqa: F401  (only probing that the client is there)
    except ImportError:
        return "redis-py is not installed (pip install 'redis>=8,<9')"
    return None


def require_redis() -> None:
    """Skip the running test without Redis, or fail it when SWARM_REQUIRE_REDIS=1."""
    import pytest

    reason = missing_reason()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 says Redis tests must run")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """One redis-server process owned by a test; see the module docstring."""

    def __init__(self, directory: Path, *, unix_socket: bool = False, fsync: str = "always",
                 password: Optional[str] = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.unix_socket = unix_socket
        self.fsync = fsync
        self.password = password
        self.port = 0 if unix_socket else _free_port()
        # A unix socket path is limited to ~107 bytes: a short name in the directory, else /tmp's.
        self.socket_path = str(self.dir / "redis.sock")
        self.proc: Optional[subprocess.Popen] = None
        self.log: list[str] = []
        self._drain: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.unix_socket:
            return f"unix://{auth}{self.socket_path}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _argv(self) -> list[str]:
        argv = [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", self.fsync, "--save", "",
                "--daemonize", "no", "--logfile", "", "--protected-mode", "yes"]
        if self.unix_socket:
            argv += ["--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    def start(self) -> "RedisServer":
        """Start the server and return once it answers PING; RuntimeError when it does not come up."""
        if self.unix_socket and len(self.socket_path) > 100:
            raise RuntimeError(f"unix socket path too long for redis: {self.socket_path}")
        for _ in range(5):  # the free port may be taken between the probe and the bind: pick another
            self.proc = subprocess.Popen(self._argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            if self._await_ready():
                break
            self._reap()
            if self.unix_socket or "Address already in use" not in "".join(self.log[-5:]):
                raise RuntimeError("redis-server did not start:\n" + "".join(self.log[-20:]))
            self.port = _free_port()
        else:
            raise RuntimeError("redis-server found no free port")
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()
        self.ping()
        return self

    def _await_ready(self) -> bool:
        """Read the server's log until it accepts connections (True) or exits (False)."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + _READY_SECONDS
        selector = selectors.DefaultSelector()
        selector.register(fd, selectors.EVENT_READ)
        pending = b""
        try:
            while time.monotonic() < deadline:
                if not selector.select(timeout=deadline - time.monotonic()):
                    break
                chunk = os.read(fd, 65536)  # raw reads: a buffered readline would hide lines from select
                if not chunk:
                    return False  # exited
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self.log.append(line.decode(errors="replace") + "\n")
                    if b"ready to accept connections" in line.lower():
                        return True
        finally:
            selector.close()
        return False

    def _read_rest(self) -> None:
        proc = self.proc
        if proc is None or proc.stdout is None:
            return
        for raw in proc.stdout:  # keeps the pipe drained, so the server never blocks on its log
            self.log.append(raw.decode(errors="replace"))

    def client(self):
        """A redis-py client of this server (the caller closes it)."""
        import redis

        if self.unix_socket:
            return redis.Redis(unix_socket_path=self.socket_path, password=self.password, socket_timeout=10)
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=10)

    def ping(self) -> None:
        client = self.client()
        try:
            if not client.ping():
                raise RuntimeError("redis-server did not answer PING")
        finally:
            client.close()

    # ------------------------------------------------------------------ faults

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final AOF flush beyond what ``appendfsync`` already did."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self._reap()

    def restart(self) -> "RedisServer":
        """Kill (if running) and start again on the same port and directory: the AOF is replayed."""
        self.kill()
        self.log.clear()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets open but answers nothing (a hung host)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def _reap(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGCONT)  # a paused server cannot die of SIGTERM
            except ProcessLookupError:
                pass
            proc.kill()
        proc.wait(timeout=30)
        if self._drain is not None and self._drain is not threading.current_thread():
            self._drain.join(timeout=10)
            self._drain = None
        if proc.stdout is not None:
            proc.stdout.close()

    def stop(self) -> None:
        """Stop the server (whatever its state); safe to call twice."""
        self._reap()

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    server = RedisServer(Path(sys.argv[1] if len(sys.argv) > 1 else ".swarm/redis")).start()
    print(server.url, flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
