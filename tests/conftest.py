"""Shared fixtures: lib/ on sys.path, a fresh workspace per test, the RALF fixture tree."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parent.parent / "lib"
TESTS = Path(__file__).resolve().parent
RALF = TESTS / "fixtures" / "ralf"
for entry in (str(LIB), str(TESTS)):
    if entry not in sys.path:
        sys.path.insert(0, entry)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path (a symlink as its target), lock sidecars and the
    task index left out: the sidecars hold the last holder's pid, and the index is a cache that any
    listing (ready, status) may write. Compare two to prove nothing was changed."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".swarm/locks") or rel == ".swarm/task-index.marshal" \
                or (path.is_dir() and not path.is_symlink()):
            continue
        found[rel] = b"-> " + os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
    return found


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty workspace root with the standard files, and SWARM_ROOT pointing at it."""
    root = tmp_path / "ws"
    (root / "tasks" / "active").mkdir(parents=True)
    (root / "tasks" / "completed").mkdir(parents=True)
    (root / "heartbeat.yaml").write_text("heartbeats: {}\nmetadata:\n  timeout_seconds: 120\n")
    (root / "events.yaml").write_text("events:\n")
    monkeypatch.setenv("SWARM_ROOT", str(root))
    return root


@pytest.fixture
def ralf(tmp_path):
    """A copy of the real RALF files, laid out as a Swarmfile workspace would read them."""
    root = tmp_path / "ralf"
    shutil.copytree(RALF, root)
    for name in os.listdir(root / "communications"):
        shutil.copy(root / "communications" / name, root / name)
    return root


@pytest.fixture(autouse=True)
def _short_lock_timeout(monkeypatch):
    """Fail fast instead of waiting the production 30 s when a test leaves a lock held."""
    from swarmfile import claims, config

    monkeypatch.setitem(config.DEFAULTS["timeouts"], "lock_seconds", 5)
    # A race lost in one test must not change the claim order of the next (claims._lost_a_race).
    monkeypatch.setattr(claims, "_contended_until", 0.0)
    config._cache.clear()
    yield
    config._cache.clear()


@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server for this test (AOF always, 127.0.0.1 only), stopped afterwards.

    Skips without redis-server or redis-py, and fails instead when SWARM_REQUIRE_REDIS=1.
    """
    from redis_server import RedisServer, require_redis

    require_redis()
    server = RedisServer(tmp_path / "redis")
    try:
        yield server.start()
    finally:
        server.stop()


# The backends a race or fault suite runs against: @pytest.mark.parametrize("backend", BACKENDS, indirect=True).
BACKENDS = ["files", "redis"]


@pytest.fixture
def backend(request, workspace):
    """Point the workspace at the backend named by the test's parameter (redis: a private server)."""
    name = getattr(request, "param", "files")
    if name == "redis":
        server = request.getfixturevalue("redis_server")
        (workspace / "swarm.yaml").write_text(f"backend: {server.url}\n")
        from swarmfile import config

        config._cache.clear()
        return server
    return None


def backend_config(root: Path, setting: str, extra: str = ""):
    """The workspace's Config with swarm.yaml saying ``backend: setting`` (a name, or a Redis URL).

    The file is written only when it differs: the child processes of a race find it written by
    their parent and must not rewrite it under a sibling that is reading it.
    """
    from swarmfile import config

    wanted = f"backend: {setting}\n{extra}"
    path = root / "swarm.yaml"
    if not path.exists() or path.read_text() != wanted:
        path.write_text(wanted)
    config._cache.clear()
    return config.load_config(root=root)
