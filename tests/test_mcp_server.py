"""mcp_server.py over real stdio: the SDK's client against server processes, one per agent."""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

import agent_discovery
import claims
import events
import merge_queue
import reservations
from swarmfile import tasks
from swarmfile import task_store
import worktrees
from conftest import snapshot
from test_executor_worktrees import git, repo
from swarmfile.liveness import pid_alive

LIB = Path(__file__).resolve().parent.parent / "lib"
SERVER = LIB / "mcp_server.py"


@asynccontextmanager
async def connect(root, agent_id, *extra, env=None):
    """A client session with a new server process for ``agent_id``; the session is open when it yields."""
    params = StdioServerParameters(command=sys.executable, args=[str(SERVER), "--agent-id", agent_id,
                                                                 "--root", str(root), *extra],
                                   env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), **(env or {})})
    with open(os.devnull, "w") as quiet:
        async with stdio_client(params, errlog=quiet) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


async def call(session, name, **arguments):
    """(text, is_error) of one tool call; every reply is one text block and no structured content."""
    result = await session.call_tool(name, arguments)
    assert len(result.content) == 1 and result.content[0].type == "text"
    assert result.structuredContent is None, "replies are text on purpose, not {'result': ...}"
    return result.content[0].text, result.isError


async def ok(session, name, **arguments):
    text, error = await call(session, name, **arguments)
    assert not error, text
    return text


def server_pid(root, agent_id):
    info = agent_discovery.get_agent_info(agent_id, root=root)
    assert info is not None and info.pid, f"{agent_id} is not registered"
    return info.pid


def add_tasks(root, count, **parts):
    for n in range(1, count + 1):
        task_store.new_task_file(f"T-{n}", f"Task number {n}", root=root, created=f"2026-01-01T00:00:{n:02d}Z", **parts)


def await_dead(pid, timeout=20.0):
    """Wait for a killed process to be gone (the client reaps its child when it closes)."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"process {pid} did not die"
        time.sleep(0.02)


def stop_outside_locks(pid, timeout=20.0):
    """SIGSTOP ``pid`` at a moment it holds no file lock.

    Its beat thread takes the lease's and heartbeat.yaml's locks a few times a second; stopped
    inside one it would block every other agent (flock is released on death, not on a stop),
    which is not what this test is about.
    """
    deadline = time.monotonic() + timeout
    while True:
        os.kill(pid, signal.SIGSTOP)
        while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
            time.sleep(0.005)  # the stop is delivered asynchronously
        with open("/proc/locks") as table:
            if not any(line.split()[4] == str(pid) for line in table if len(line.split()) > 4):
                return
        os.kill(pid, signal.SIGCONT)
        assert time.monotonic() < deadline, f"process {pid} never stopped outside its locks"
        time.sleep(0.01)


def test_four_agents_claim_at_once_and_each_task_is_done_once(workspace):
    add_tasks(workspace, 8)
    claimed: dict[str, list[str]] = {}

    async def main():
        connected, go = [], anyio.Event()

        async def agent():
            async with connect(workspace, "agent") as session:  # one id asked for four times
                name = (await ok(session, "status")).split()[2]  # the session is open: registered
                connected.append(name)
                if len(connected) == 4:
                    go.set()
                await go.wait()  # the start barrier: every agent claims at the same moment
                while True:
                    text = await ok(session, "claim")
                    if text.startswith("No task"):
                        return
                    task_id = text.split()[3].rstrip(":")
                    claimed.setdefault(task_id, []).append(name)
                    await ok(session, "done", summary=f"{name} did {task_id}")

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(agent)
        assert sorted(connected) == ["agent", "agent-2", "agent-3", "agent-4"]

    anyio.run(main)
    assert sorted(claimed) == [f"T-{n}" for n in range(1, 9)]
    assert all(len(agents) == 1 for agents in claimed.values()), claimed
    done = events.read_events(types=["completed"], root=workspace)
    assert sorted(e["task_id"] for e in done) == sorted(claimed)
    assert {e["agent"] for e in done} == {a for agents in claimed.values() for a in agents}
    assert len(task_store.list_tasks(directory=workspace / "tasks" / "completed")) == 8
    stopped = events.read_events(types=["stopped"], root=workspace)
    assert len(stopped) == 4, "each server closed its session when its client went away"


def test_a_server_killed_mid_task_leaves_the_task_to_the_next_agent(workspace):
    add_tasks(workspace, 1)

    async def main():
        async with connect(workspace, "doomed") as first:
            assert "You hold task T-1" in await ok(first, "claim")
            pid = server_pid(workspace, "doomed")
            os.kill(pid, signal.SIGKILL)
            await anyio.to_thread.run_sync(await_dead, pid)
            async with connect(workspace, "heir") as second:
                text = await ok(second, "claim")
                assert "You hold task T-1" in text
                assert "is completed" in await ok(second, "done", summary="finished what doomed began")

    anyio.run(main)
    requeued = events.read_events(types=["requeued"], task_id="T-1", root=workspace)
    assert requeued and requeued[0]["previous_agent"] == "doomed" and "dead" in requeued[0]["reason"]
    done = events.read_events(types=["completed"], task_id="T-1", root=workspace)
    assert [(e["agent"], e["token"]) for e in done] == [("heir", 2)]


def test_a_holder_paused_past_its_ttl_is_refused_done(workspace):
    add_tasks(workspace, 1)

    async def main():
        async with connect(workspace, "sleeper", "--ttl", "1") as sleeper:
            await ok(sleeper, "claim")
            pid = server_pid(workspace, "sleeper")
            stop_outside_locks(pid)
            try:
                lease = claims.get_lease("T-1", root=workspace)
                while not lease.expired():  # waiting for the clock is the point of this test
                    await anyio.sleep(max(0.02, lease.seconds_left()))
                    lease = claims.get_lease("T-1", root=workspace)
                async with connect(workspace, "taker") as taker:
                    assert "You hold task T-1" in await ok(taker, "claim")
                    os.kill(pid, signal.SIGCONT)
                    text, error = await call(sleeper, "done", summary="too late")
                    assert error
                    assert "T-1" in text and "token 1 is stale, the task is now with taker (token 2)" in text, text
                    assert "\n" not in text and "Traceback" not in text
                    again, error = await call(sleeper, "claim")
                    assert not error and again.startswith("No task"), again
                    assert "is completed" in await ok(taker, "done")
            finally:
                os.kill(pid, signal.SIGCONT)

    anyio.run(main)
    done = events.read_events(types=["completed"], task_id="T-1", root=workspace)
    assert [e["agent"] for e in done] == ["taker"]


BAD_INPUT = [
    ("ready", {"limit": "ten"}, "limit must be a whole number"),
    ("claim", {"task_id": "../../etc/passwd"}, "invalid task id"),
    ("claim", {"task_id": "T-404"}, "T-404"),
    ("claim", {"task": "T-1"}, "claim has no argument 'task'"),
    ("renew", {}, "you hold no task"),
    ("done", {}, "you hold no task"),
    ("done", {"summary": ["a"]}, "summary must be text"),
    ("failed", {}, "failed needs reason"),
    ("failed", {"reason": "  "}, "reason is empty"),
    ("waiting", {"message": "x", "need_help": "yes"}, "need_help must be true or false"),
    ("reserve", {"patterns": []}, "nothing to reserve"),
    ("reserve", {"patterns": "lib/x.py"}, "patterns must be a list of strings"),
    ("reserve", {"patterns": ["../outside"]}, ".."),
    ("release", {"patterns": ["never/held.py"]}, "you hold no reservation of never/held.py"),
    ("send_message", {"to": "no such id!", "text": "hi"}, "invalid recipient id"),
    ("send_message", {"to": "b"}, "send_message needs text"),
    ("inbox", {"mark_read": 1}, "mark_read must be true or false"),
    ("add_task", {"title": ""}, "title is empty"),
    ("add_task", {"title": "x", "priority": "urgent"}, "priority must be one of critical, high, medium, low"),
    ("add_task", {"title": "x", "depends_on": "T-1"}, "depends_on must be a list of strings"),
    ("status", {"verbose": True}, "status has no argument 'verbose'"),
    ("no_such_tool", {}, "there is no tool 'no_such_tool'"),
]


def test_every_tool_refuses_bad_input_in_one_sentence_and_changes_nothing(workspace):
    add_tasks(workspace, 1)
    (workspace / "tasks" / "active" / "T-9-held.md").write_text("# T-9: Held elsewhere\n\n**Status:** pending\n")
    claims.claim_task("T-9", "someone-else", 300, root=workspace)
    replies = []

    async def main():
        async with connect(workspace, "clumsy") as session:
            await ok(session, "status")
            before = {k: v for k, v in snapshot(workspace).items() if k != "heartbeat.yaml"}
            for name, arguments, _ in BAD_INPUT:
                replies.append(await call(session, name, **arguments))
            held, error = await call(session, "claim", task_id="T-9")
            replies.append((held, error))
            after = {k: v for k, v in snapshot(workspace).items() if k != "heartbeat.yaml"}
            assert after == before, "a refused call changed nothing"

    anyio.run(main)
    for (name, arguments, expected), (text, error) in zip(BAD_INPUT, replies):
        assert error, (name, arguments, text)
        assert expected in text, (name, arguments, text)
        assert "\n" not in text and "Traceback" not in text and len(text) < 400, text
    assert replies[-1][1] and "task T-9 is held by someone-else" in replies[-1][0]


def test_a_session_that_ends_gives_its_task_back(workspace):
    ends = {"quitter": "eof", "interrupted": signal.SIGINT, "terminated": signal.SIGTERM}
    for n, agent in enumerate(ends, 1):
        task_store.new_task_file(f"T-{n}", f"Task of {agent}", root=workspace, files=[f"src/{agent}.py"])
    held = {}

    async def main():
        async def leave(agent, how):
            async with connect(workspace, agent) as session:
                text = await ok(session, "claim")
                held[agent] = text.split()[3].rstrip(":")
                assert "Reserved for you: src/" in text
                await ok(session, "reserve", patterns=[f"docs/{agent}/**"])
                if how != "eof":
                    pid = server_pid(workspace, agent)
                    os.kill(pid, how)
                    await anyio.to_thread.run_sync(await_dead, pid)

        async with anyio.create_task_group() as tg:
            for agent, how in ends.items():
                tg.start_soon(leave, agent, how)

    anyio.run(main)
    for agent, how in ends.items():  # a task given back may be claimed again by a later agent
        released = events.read_events(types=["released"], agent=agent, root=workspace)
        reason = "mcp client disconnected" if how == "eof" else f"mcp server stopped by {how.name}"
        assert [(e["task_id"], e["reason"]) for e in released] == [(held[agent], reason)]
        assert agent_discovery.get_agent_info(agent, root=workspace).status == "stopped"
    for task in task_store.list_tasks(root=workspace):
        assert task.status is tasks.Status.PENDING
        lease = claims.get_lease(task.task_id, root=workspace)
        assert lease is None or lease.state is claims.LeaseState.RELEASED
    assert reservations.list_reservations(root=workspace) == []


def test_a_task_done_in_a_worktree_merges_through_the_queue(workspace):
    repo(workspace)  # a git checkout with one commit, as the executor's worktree tests make it
    add_tasks(workspace, 1)

    async def main():
        async with connect(workspace, "builder", "--worktree") as session:
            text = await ok(session, "claim")
            where = next(line for line in text.splitlines() if line.startswith("Working directory: "))
            path = Path(where.split(": ", 1)[1])
            assert path != workspace and path.is_dir() and "on branch swarm/T-1/builder-" in text
            (path / "feature.txt").write_text("built by the agent\n")
            reply = await ok(session, "done", summary="add the feature file")
            assert "merged branch swarm/T-1/builder-" in reply, reply

    anyio.run(main)
    assert git(workspace, "show", "main:feature.txt") == "built by the agent\n"
    # The merged branch's commit, as main's second parent: ``log -2`` listed base instead when all
    # three commits fell in one second (git orders equal commit dates by parent order).
    assert git(workspace, "log", "-1", "--format=%s", "main^2") == "T-1: add the feature file [swarm builder]\n"
    assert [e.status for e in merge_queue.read_queue(root=workspace)][-1] == "merged"
    done = events.read_events(types=["completed"], task_id="T-1", root=workspace)
    assert done[0]["merge"] == "merged" and done[0]["files_modified"] == ["feature.txt"]
    assert task_store.find_task("T-1", root=workspace).path.parent.name == "completed"
    assert worktrees.list_worktrees(root=workspace) == [], "the merged worktree is retired"


def test_under_an_executor_the_task_tools_are_refused(workspace):
    add_tasks(workspace, 1)
    replies = {}

    async def main():  # an executor ran the CLI for T-1; the CLI passes its environment on to the server
        async with connect(workspace, "claude", env={"SWARM_TASK_ID": "T-1", "SWARM_AGENT_ID": "executor-1"}) as s:
            for name, arguments in [("claim", {}), ("renew", {}), ("done", {}), ("failed", {"reason": "x"}),
                                    ("waiting", {"message": "x"})]:
                replies[name] = await call(s, name, **arguments)
            replies["reserve"] = await call(s, "reserve", patterns=["lib/x.py"])

    anyio.run(main)
    for name in ("claim", "renew", "done", "failed", "waiting"):
        text, error = replies[name]
        assert error and text.startswith("an executor runs you for task T-1:") and "\n" not in text, text
    assert not replies["reserve"][1], "the other tools serve the agent as usual"
    assert task_store.find_task("T-1", root=workspace).status is tasks.Status.PENDING
    assert claims.get_lease("T-1", root=workspace) is None


def test_each_tool_does_its_work(workspace):
    add_tasks(workspace, 2)
    import chat

    async def main():
        async with connect(workspace, "worker") as session:
            assert "2 task(s) ready" in await ok(session, "ready", limit=1) and "... and 1 more" in await ok(
                session, "ready", limit=1)
            assert "You hold task T-1" in await ok(session, "claim", task_id="T-1")
            assert "Your lease on T-1 runs until" in await ok(session, "renew")
            assert "Reserved lib/a.py, docs/** (shared)" in await ok(session, "reserve", patterns=["lib/a.py", "docs/**"],
                                                                    exclusive=False)
            assert "Released lib/a.py, docs/**." == await ok(session, "release", patterns=["docs/**"])
            assert "Sent message 1 to planner." == await ok(session, "send_message", to="planner", text="starting T-1")
            chat.send("planner", "worker", "use the v2 API", task_id="T-1", type="answer", root=workspace)
            inbox = await ok(session, "inbox")
            assert "#2 from planner about T-1 (answer): use the v2 API" in inbox
            assert await ok(session, "inbox") == "No unread messages."
            asked = await ok(session, "waiting", message="which database?", need_help=True)
            assert "T-1 is back in the queue (help)" in asked and "message 3" in asked
            assert "You hold task T-2" in await ok(session, "claim")
            assert "T-2 failed (attempt 1 of 3); it is retried in 5 s" in await ok(session, "failed", reason="no disk")
            created = await ok(session, "add_task", title="Document the v2 API", priority="high", files=["docs/v2.md"])
            assert created.startswith("Created TASK-") and "(high)" in created
            status = await ok(session, "status")
            assert "You hold no task." in status and "Tasks: 3 pending." in status

    anyio.run(main)
    kinds = [(e["type"], e.get("task_id")) for e in events.read_events(agent="worker", root=workspace)
             if e["type"] not in ("registered", "stopped", "message")]
    assert kinds == [("started", "T-1"), ("help", "T-1"), ("started", "T-2"), ("failed", "T-2"), ("created", kinds[-1][1])]
    question = chat.read_messages(root=workspace)[-1]
    assert (question.from_agent, question.type.value, question.task_id) == ("worker", "help", "T-1")
    assert question.to.endswith("planner"), "to the planner's id (swarm.yaml planner.agent_id)"
