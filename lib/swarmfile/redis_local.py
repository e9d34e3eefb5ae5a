"""A throwaway redis-server for the demo: a free loopback port, its own folder, AOF on every write.

``LocalRedis(directory).start()`` runs ``redis-server`` bound to 127.0.0.1 only (protected mode,
``appendonly yes``, ``appendfsync always``, no RDB snapshots), and returns once the server has
logged that it accepts connections (its log is read, not polled); ``stop()`` ends it. Nothing
here is for production: run a managed Redis there (README, Backends).
"""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

from .errors import BackendUnavailable
from .liveness import stop_processes

__all__ = ["LocalRedis"]

_READY_SECONDS = 30.0  # a redis-server that has not logged "ready" by then is broken


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalRedis:
    """One redis-server process on this machine (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None
        self.log: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "LocalRedis":
        binary = shutil.which("redis-server")
        if binary is None:
            raise BackendUnavailable("redis-server is not installed", hint="apt install redis-server, or pass "
                                     "--backend redis://host:port/db to use a running one")
        self.dir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # the probed port may be taken before the server binds it: take another
            self.port = _free_port()
            self.proc = subprocess.Popen(
                [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
                 "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
                 "--logfile", "", "--protected-mode", "yes"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            if self._ready():
                threading.Thread(target=self._drain, daemon=True).start()
                return self
            self.stop()
            if "Address already in use" not in "".join(self.log[-5:]):
                break
        raise BackendUnavailable("redis-server did not start: " + " ".join(self.log[-3:]).strip()[-300:])

    def _ready(self) -> bool:
        """Read the server's log until it accepts connections (True), or exits or stalls (False)."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + _READY_SECONDS
        pending = b""
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(timeout=deadline - time.monotonic()):
                    return False
                chunk = os.read(fd, 65536)  # raw reads: a buffered readline would hide lines from select
                if not chunk:
                    return False
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self.log.append(line.decode(errors="replace"))
                    if b"ready to accept connections" in line.lower():
                        return True
        return False

    def _drain(self) -> None:
        proc = self.proc
        if proc is not None and proc.stdout is not None:
            for _ in proc.stdout:  # keep the pipe drained, so the server never blocks on its log
                pass

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        stop_processes([proc], grace=10)
