"""The agent-registry contract: every implementation of agent_registry.AgentRegistry passes these same tests.

Each implementation is named by a swarm.yaml backend that uses it (IMPLEMENTATIONS); a new one is
added there (with what it needs to start, and how to corrupt it in ``_corrupt``) and is proven by
this file. agent_discovery's own tests cover liveness, the public functions and the command line.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarmfile import stores
from swarmfile.agent_registry import KEEP, AgentRegistry
from swarmfile.clock import HOSTNAME
from swarmfile.errors import InvalidIdError, NotFoundError, SwarmError, ValidationError
from conftest import backend_config
from procs import run_together

# One swarm.yaml backend per AgentRegistry implementation.
IMPLEMENTATIONS = ["files", "redis"]


def _make(name: str, root: Path) -> AgentRegistry:
    """The registry ``backend: name`` gives (``name`` is the setting: a Redis URL for redis)."""
    return stores.agent_registry(backend_config(root, name))


@pytest.fixture(params=IMPLEMENTATIONS)
def registry(request, workspace) -> AgentRegistry:
    setting = request.param
    if setting == "redis":
        setting = request.getfixturevalue("redis_server").url
    made = _make(setting, workspace)
    made.backend_name = request.param
    made.setting = setting  # what a child process passes to _make for the same registry
    return made


def test_every_implementation_in_stores_is_proven_here():
    assert {b.agent_registry for b in stores.BACKENDS.values()} == {
        stores.BACKENDS[n].agent_registry for n in IMPLEMENTATIONS}


def test_a_new_registry_has_no_agents_and_checks_clean(registry):
    assert not registry.entries() and registry.get("executor-1") is None
    assert registry.check()[0] == [] and isinstance(registry.where(), str)


def test_register_records_the_agent_running_with_this_process(registry):
    entry = registry.register("executor-1", "executor", note="kept")
    assert entry["status"] == "running" and entry["role"] == "executor" and entry["note"] == "kept"
    assert entry["pid"] == os.getpid() and entry["host"] == HOSTNAME and entry["current_task"] is None
    assert entry["last_seen"] == entry["started_at"]
    registry.register("planner", "planner", pid=None)
    assert list(registry.entries()) == ["executor-1", "planner"]  # in registration order
    assert registry.get("executor-1") == entry and registry.get("planner")["pid"] is None


def test_beat_changes_what_it_names_and_keeps_everything_else(registry):
    registry.register("executor-1", "executor", note="kept")
    entry = registry.beat("executor-1", current_task="T-1", current_action="executing", record_process=False, n=1)
    assert (entry["current_task"], entry["current_action"], entry["note"], entry["n"]) == ("T-1", "executing", "kept", 1)
    entry = registry.beat("executor-1", current_action=None, record_process=False)  # None clears, KEEP keeps
    assert entry["current_action"] is None and entry["current_task"] == "T-1" and entry["n"] == 1
    assert registry.beat("executor-1", "waiting", KEEP, KEEP)["status"] == "waiting"
    assert registry.get("executor-1") == entry | {"status": "waiting", "last_seen": registry.get("executor-1")["last_seen"]}


def test_beat_of_an_unknown_agent_adds_it_or_refuses_storing_nothing(registry):
    with pytest.raises(NotFoundError):
        registry.beat("ghost", add_missing=False)
    assert registry.get("ghost") is None
    assert registry.beat("ghost")["status"] == "running"


def test_deregister_marks_stopped_or_removes_and_a_beat_revives(registry):
    registry.register("executor-1", "executor")
    assert registry.deregister("executor-1")["status"] == "stopped"
    assert registry.beat("executor-1", record_process=False)["status"] == "running"
    assert registry.deregister("executor-1", remove=True)["role"] == "executor"
    assert registry.get("executor-1") is None
    assert registry.deregister("executor-1") is None


def test_update_that_returns_none_stores_nothing(registry):
    registry.register("executor-1", "executor")
    before = registry.entries()
    assert registry.update("executor-1", lambda beats, now: None, create=True) is None
    assert registry.entries() == before


@pytest.mark.parametrize("bad", [{"pid": -3}, {"bad name": 1}, {"when": object()}])
def test_bad_values_and_ids_are_refused_before_anything_is_stored(registry, bad):
    with pytest.raises(ValidationError):
        registry.register("executor-1", "executor", **bad)
    with pytest.raises(InvalidIdError):
        registry.register("../escape", "executor")
    assert not registry.entries()


def _corrupt(registry: AgentRegistry, workspace: Path) -> None:
    """Leave a registry that cannot be read, as a crash, a bad disk or a person would."""
    if registry.backend_name == "files":
        Path(registry.where()).write_text("heartbeats:\n  executor-1: [not, a, mapping]\n")
    elif registry.backend_name == "redis":
        registry.client.hset(registry.where().split()[-1], "executor-1", "[not, a, mapping")


def test_a_registry_that_cannot_be_read_raises_is_never_replaced_and_check_names_it(registry, workspace):
    registry.register("executor-1", "executor")
    _corrupt(registry, workspace)
    with pytest.raises(SwarmError):
        registry.entries()
    with pytest.raises(SwarmError):
        registry.register("executor-2", "executor")
    with pytest.raises(SwarmError):
        registry.entries()  # still unreadable: the writer did not reset it
    problems, parts = registry.check()
    assert parts == 1 and [p.severity for p in problems] == ["ERROR"] and problems[0].where


# ---------------------------------------------------------------------------- many processes


def _beat_many(name: str, root: str, agent_id: str, rounds: int) -> int:
    registry = _make(name, Path(root))
    registry.register(agent_id, "executor", beats=0)
    for count in range(1, rounds + 1):
        registry.beat(agent_id, current_action="working", beats=count)
    return rounds


def test_eight_processes_lose_no_update(registry, workspace):
    registry.register("keeper", "planner", pid=None, note="stays")
    rounds = 15
    done = run_together(_beat_many, [(registry.setting, str(workspace), f"executor-{n}", rounds) for n in range(8)],
                        timeout=300)
    assert sum(done) == 8 * rounds
    beats = registry.entries()
    assert beats.pop("keeper")["note"] == "stays"
    assert sorted(beats) == [f"executor-{n}" for n in range(8)]
    assert {entry["beats"] for entry in beats.values()} == {rounds}
    assert {entry["role"] for entry in beats.values()} == {"executor"}
