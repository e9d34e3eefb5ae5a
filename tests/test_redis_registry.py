"""The agent registry on Redis beyond the shared contract (test_agent_registry.py): heartbeat expiry by the server's clock."""

from __future__ import annotations

import time

import pytest

from swarmfile import stores
from swarmfile.errors import ValidationError
from conftest import backend_config

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def registry(workspace, redis_server):
    return stores.agent_registry(backend_config(workspace, redis_server.url))


def _beat_at(registry, agent_id: str, seconds_ago: float) -> None:
    """Set an agent's last beat ``seconds_ago`` by the server's clock: as if it stopped beating then."""
    seconds, micros = registry.client.time()
    registry.client.zadd(registry._key("agents:beats"), {agent_id: seconds + micros / 1e6 - seconds_ago})


def test_every_write_of_an_entry_records_its_beat_and_fresh_agents_are_not_stale(registry):
    registry.register("executor-1", "executor")
    registry.register("executor-2", "executor")
    assert registry.stale() == {} and registry.stale(3600) == {}
    beats = dict(registry.client.zrange(registry._key("agents:beats"), 0, -1, withscores=True))
    assert set(beats) == {b"executor-1", b"executor-2"}
    registry.deregister("executor-2", remove=True)
    assert registry.client.zrange(registry._key("agents:beats"), 0, -1) == [b"executor-1"]


def test_stale_names_the_agents_older_than_the_expiry_by_the_server_clock_oldest_first(registry, monkeypatch):
    for name in ("a", "b", "c"):
        registry.register(name, "executor")
    _beat_at(registry, "a", 3600)
    _beat_at(registry, "b", 600)
    monkeypatch.setattr(time, "time", lambda: 0.0)  # this host's clock plays no part
    found = registry.stale(300)
    assert list(found) == ["a", "b"] and 3599 < found["a"] < 3700 and 599 < found["b"] < 700
    assert list(registry.stale()) == ["a", "b"]  # default: timeouts.heartbeat_seconds (120)
    assert list(registry.stale(1200)) == ["a"]
    with pytest.raises(ValidationError):
        registry.stale(-1)


def test_prune_removes_only_expired_entries_and_a_beat_saves_an_agent(registry):
    for name in ("a", "b", "c"):
        registry.register(name, "executor")
    _beat_at(registry, "a", 3600)
    _beat_at(registry, "b", 3600)
    registry.beat("b")  # it came back before the prune
    assert registry.prune(300) == ["a"]
    assert list(registry.entries()) == ["b", "c"]
    assert registry.prune(300) == [] and registry.get("a") is None
    assert registry.register("a", "executor")["status"] == "running"  # registers again after a prune
    assert list(registry.entries()) == ["b", "c", "a"]


def test_discovery_judges_redis_heartbeats_by_the_server_clock_not_a_skewed_host_clock(registry, workspace, monkeypatch):
    from datetime import timedelta

    from swarmfile import agent_discovery, clock

    registry.register("executor-1", "executor", pid=None)
    ahead = clock.utc_now() + timedelta(hours=1)
    monkeypatch.setattr(agent_discovery, "utc_now", lambda: ahead)  # this host's clock is an hour fast
    assert [a.agent_id for a in agent_discovery.discover_agents(root=workspace)] == ["executor-1"]
    _beat_at(registry, "executor-1", 3600)  # the score, not last_seen, is what stale() reads
    assert list(registry.stale()) == ["executor-1"]
