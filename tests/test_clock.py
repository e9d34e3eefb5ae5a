"""clock: HOSTNAME (this machine's identity in leases and liveness, and SWARM_HOST overriding it); now_ts."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from swarmfile import agent_discovery, clock
from swarmfile.clock import HOSTNAME
from conftest import LIB


def _hostname(env: dict) -> str:
    probe = "from swarmfile.clock import HOSTNAME; print(HOSTNAME)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=LIB, env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.strip()


def test_swarm_host_names_the_host_when_set_else_the_kernel_node_name():
    base = {k: v for k, v in os.environ.items() if k != "SWARM_HOST"}
    assert _hostname(base) == os.uname().nodename
    assert _hostname({**base, "SWARM_HOST": "box-b"}) == "box-b"
    assert _hostname({**base, "SWARM_HOST": "  "}) == os.uname().nodename  # blank: not set


def test_an_agent_of_another_swarm_host_is_judged_by_its_heartbeat_not_by_a_local_pid(workspace):
    """Two "hosts" on one machine are two environments: a pid recorded on the other is not probed here."""
    register = ("import sys; from swarmfile import agent_discovery; "
                "agent_discovery.register_agent('executor-b', role='executor', root=sys.argv[1])")
    env = {**os.environ, "SWARM_HOST": "box-b"}
    subprocess.run([sys.executable, "-c", register, str(workspace)], cwd=LIB, env=env, check=True, timeout=60)
    info = agent_discovery.get_agent_info("executor-b", root=workspace)
    assert info.host == "box-b" and info.pid is not None  # its process has exited by now
    assert [a.agent_id for a in agent_discovery.discover_agents(root=workspace)] == ["executor-b"]
    same = {**os.environ, "SWARM_HOST": HOSTNAME}
    subprocess.run([sys.executable, "-c", register, str(workspace)], cwd=LIB, env=same, check=True, timeout=60)
    assert agent_discovery.discover_agents(root=workspace) == []  # on this host: its dead pid is seen at once


@pytest.mark.parametrize("ns", [0, 1_764_532_222_000_000_000, 1_764_532_222_999_999_999, 1_764_532_223_000_999_000,
                                1_764_532_222_123_456_789, 951_782_400_500_000_000])  # 2000-02-29, half a second
def test_now_ts_writes_what_format_ts_writes_of_the_same_instant(monkeypatch, ns):
    """now_ts skips the datetime: the text must still be format_ts's (microseconds rounded down, then ms)."""
    monkeypatch.setattr(clock.time, "time_ns", lambda: ns)
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=ns // 1000)
    assert clock.now_ts() == clock.format_ts(moment)
    assert clock.now_ts() == clock.format_ts(moment)  # the second's text, kept from the call before


def test_now_ts_is_now():
    before = clock.utc_now()
    stamp = clock.now_ts()
    assert before - timedelta(milliseconds=1) <= clock.parse_ts(stamp) <= clock.utc_now()
