"""Fixtures for the real-CLI tests: one stub model and one network sandbox per test module.

A real CLI missing (tools/install-agent-clis not run) or no network namespace possible skips
a test with the reason; under ``SWARM_REQUIRE_REAL_CLIS=1`` (CI) it fails instead. Every test
that uses ``model`` fails at teardown if any process tried to reach a host beyond this machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from realcli.sandbox import Sandbox, find_cli, namespace_problem
from realcli.stub_model import StubModel


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail where the real CLIs are required (CI)."""
    if os.environ.get("SWARM_REQUIRE_REAL_CLIS") == "1":
        pytest.fail(f"{reason} (SWARM_REQUIRE_REAL_CLIS=1: real-CLI tests must run here)", pytrace=False)
    pytest.skip(reason)


def need_cli(name: str) -> Path:
    path = find_cli(name)
    if path is None:
        unavailable(f"the pinned {name} CLI is not installed: run tools/install-agent-clis")
    if shutil.which("node") is None:
        unavailable(f"{name} needs node, which is not installed")
    return path


@pytest.fixture(scope="module")
def stub():
    """The module's stub model server; its unix socket lives in a short private directory
    (socket paths are limited to ~100 bytes, which a deep tmp_path can exceed)."""
    where = Path(tempfile.mkdtemp(prefix="swarm-stub-"))
    try:
        with StubModel(socket_path=where / "model.sock") as server:
            yield server
    finally:
        shutil.rmtree(where, ignore_errors=True)


@pytest.fixture(scope="module")
def sandbox(stub, tmp_path_factory):
    """The module's loopback-only network namespace, in which 127.0.0.1:stub.port is the stub."""
    problem = namespace_problem()
    if problem:
        unavailable(f"no network namespace can be made here: {problem}")
    with Sandbox(stub, tmp_path_factory.mktemp("home")) as box:
        yield box


@pytest.fixture
def model(stub, sandbox):
    """The stub with an empty script and nothing recorded; at teardown, no connection may have
    been attempted to any other host."""
    stub.play([])
    yield stub
    assert stub.refused == [], f"a CLI tried to reach beyond this machine: {stub.refused}"


@pytest.fixture
def claude_cli() -> Path:
    return need_cli("claude")


@pytest.fixture
def codex_cli() -> Path:
    return need_cli("codex")


@pytest.fixture
def gemini_cli() -> Path:
    return need_cli("gemini")
