"""The shape of the house: no import cycles, no private names across modules, no name a host repository could shadow."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parent.parent / "lib"
PACKAGE = LIB / "swarmfile"

# Module names an autonomous-agent repository's own lib/ is known to use (the RALF repository's
# loops import config, paths, storage ...): Swarmfile puts none of them on sys.path.
HOST_NAMES = {"config", "paths", "storage", "memory", "workspace", "cli", "errors", "utils", "tasks", "agents",
              "state_machine", "config_manager", "models", "logger", "helpers", "common"}


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.glob("*.py")) if p.stem != "__init__"}


def _imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import of a package module, lazy ones too."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            inside = node.level == 1 or node.module == "swarmfile" or (node.module or "").startswith("swarmfile.")
            if not inside:
                continue
            module = (node.module or "").removeprefix("swarmfile").lstrip(".") if node.level == 0 else node.module
            if module:  # from .x import a, b
                found.append((module.split(".")[0], [a.name for a in node.names]))
            else:  # from . import x, y
                found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name.split(".")[1], []) for a in node.names if a.name.startswith("swarmfile.")]
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: {m for m, _ in _imports(tree) if m in mods and m != name} for name, tree in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# Cycles still to take apart (each hidden by a lazy import); this list only ever shrinks.
KNOWN_CYCLES: list[list[str]] = []


def test_no_new_import_cycle():
    found = _cycles(_graph())
    new = [c for c in found if c not in KNOWN_CYCLES]
    assert new == [], "modules that import each other (directly or round a loop): move what both need down"
    assert [c for c in KNOWN_CYCLES if c not in found] == [], "a known cycle is gone: take it off KNOWN_CYCLES"


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_uses_another_modules_private_names():
    offenders = []
    for name, tree in _modules().items():
        aliases = {}
        for module, names in _imports(tree):
            offenders += [f"{name} imports {module}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
            aliases[module] = module
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                offenders.append(f"{name} uses {node.value.id}.{node.attr}")
    assert offenders == []


def _positional_root(tree: ast.Module) -> list[str]:
    """Public functions and methods that take ``root`` by position."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            if "root" in [a.arg for a in node.args.posonlyargs + node.args.args]:
                found.append(f"{node.name} (line {node.lineno})")
    return found


def test_every_public_function_takes_root_by_name():
    """One convention for the workspace argument: ``root=`` is keyword-only everywhere."""
    offenders = {name: found for name, tree in _modules().items() if (found := _positional_root(tree))}
    assert offenders == {}


def test_the_root_check_finds_a_positional_root():
    assert _positional_root(ast.parse("def f(a, root=None): pass\ndef g(a, *, root=None): pass")) == ["f (line 1)"]


def test_nothing_at_the_top_of_lib_has_a_name_a_host_uses():
    top = {p.stem for p in LIB.glob("*.py")}
    assert top and not top & HOST_NAMES


@pytest.mark.parametrize("order", ["host-first", "swarmfile-first"])
def test_a_host_loop_imports_its_own_config_beside_swarmfile(tmp_path, order, workspace):
    """A RALF-style loop: its own lib/ with config.py, paths.py, errors.py, and Swarmfile's lib/ on sys.path."""
    host = tmp_path / "host-lib"
    host.mkdir()
    (host / "config.py").write_text("def get_config():\n    return {'owner': 'host'}\n")
    (host / "paths.py").write_text("ROOT = 'host-paths'\n")
    (host / "errors.py").write_text("class HostError(Exception):\n    pass\n")
    first, second = (host, LIB) if order == "host-first" else (LIB, host)
    loop = tmp_path / "loop.py"
    loop.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(second)!r})
        sys.path.insert(0, {str(first)!r})
        from config import get_config
        from paths import ROOT
        from errors import HostError
        import agent_discovery, claims, events, task_distribution, state_sync
        assert get_config() == {{'owner': 'host'}} and ROOT == 'host-paths' and HostError
        agent_discovery.register_agent('host-loop', role='executor', root={str(workspace)!r})
        events.append_event('started', 'host-loop', None, root={str(workspace)!r})
        print(sorted(a.agent_id for a in agent_discovery.discover_agents(root={str(workspace)!r})),
              claims.ready_tasks(root={str(workspace)!r}))
    """))
    out = subprocess.run([sys.executable, str(loop)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['host-loop'] []"


def test_the_package_alone_runs_its_command_lines(tmp_path, workspace):
    """As `pip install .` leaves it: only the package, no lib/<module>.py beside it."""
    import shutil

    site = tmp_path / "site-packages"
    shutil.copytree(PACKAGE, site / "swarmfile", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}
    argv = subprocess.run([sys.executable, "-c", "from swarmfile.cli import module_argv; print(module_argv('executor'))"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert argv.stdout.strip() == str([sys.executable, "-m", "swarmfile", "executor"]), argv.stderr
    done = subprocess.run([sys.executable, "-m", "swarmfile", "swarm", "new-task", "From the package",
                           "--root", str(workspace)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert list((workspace / "tasks" / "active").glob("*-from-the-package.md"))
    helped = subprocess.run([sys.executable, "-m", "swarmfile", "executor", "--help"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith("usage:")


def test_a_command_line_does_not_import_redis():
    """portalocker would import redis-py (installed for the Redis backend) and triple a CLI's start-up."""
    pytest.importorskip("redis")
    probe = "import sys, claims, events, agent_discovery; print(sorted(m for m in sys.modules if m.split('.')[0] == 'redis'))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=LIB, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- storage layouts

# Each store's file implementation, and the modules that may import it: everyone else talks to
# the interface that stores.py hands out, so no module outside knows how the store is kept.
IMPLEMENTATIONS = {"event_log_file": {"stores"}, "agent_registry_file": {"stores"}, "event_check": {"event_log_file"}}


def test_only_stores_imports_a_store_implementation():
    offenders = [f"{name} imports {module}" for name, tree in _modules().items()
                 for module, _ in _imports(tree) if module in IMPLEMENTATIONS and name not in IMPLEMENTATIONS[module]]
    assert offenders == []


_OPENS = r"""
import os, sys, traceback
sys.path.insert(0, sys.argv[1])
root = os.path.abspath(sys.argv[2])
owner = {"heartbeat.yaml": "swarmfile.agent_registry_file"}  # events.yaml and its archives: below
offenders = set()

def hook(event, args):
    if event not in ("open", "os.rename", "os.truncate", "os.remove"):
        return
    named = args[:2] if event == "os.rename" else args[:1]  # a rename: from and to
    for path in (os.fsdecode(a) for a in named if isinstance(a, (str, bytes, os.PathLike))):
        check(path)

def check(path):
    name = os.path.basename(path)
    if os.path.dirname(os.path.abspath(path)) != root or not (
            name in ("events.yaml", "heartbeat.yaml") or (name.startswith("events-") and name.endswith(".yaml"))):
        return
    wanted = owner.get(name, "swarmfile.event_log_file")
    frames = [f.f_globals.get("__name__", "") for f in iter_frames(sys._getframe(2))]
    if "__main__" in frames[:1]:
        return  # this script's own write
    if wanted not in frames:  # every open of a store's file happens inside its implementation
        callers = [m for m in frames if m.startswith("swarmfile.")]
        offenders.add(f"{callers[:3]} open {name} outside {wanted}")

def iter_frames(frame):
    while frame is not None:
        yield frame
        frame = frame.f_back

import agent_discovery, events
from swarmfile import chat, dashboard, doctor, merge_queue, planner, swarm, workspace
sys.addaudithook(hook)
workspace.init_workspace(root=root)
agent_discovery.register_agent("executor-1", role="executor", root=root)
agent_discovery.heartbeat("executor-1", current_task="T-1", root=root)
events.append_event("started", "executor-1", "T-1", root=root, rotate_bytes=1)  # rotated into an archive
events.StatusBroadcaster("executor-1", root=root).done("T-1")
chat.send("executor-1", "planner", "hello", root=root)
assert events.read_events(root=root, include_archives=True) and events.tail(1, root=root)
assert list(events.follow(root=root, backlog=1, timeout=0.05, interval=0.01))
planner.Planner("planner", root=root).round()
swarm.collect_status(root=root)
dashboard.collect(root=root)
merge_queue.read_queue(root=root)
with open(os.path.join(root, "events.yaml"), "a") as torn:  # this script's own write: not a package module
    torn.write("- {timestamp: '2026-11-30T10:00:00Z', type: x")
doctor.diagnose(root=root, fix=True)
agent_discovery.deregister_agent("executor-1", root=root)
print(sorted(offenders))
"""


def test_only_the_file_implementations_open_the_event_log_and_the_registry(workspace):
    """Run the loops' and CLIs' cores and doctor with an audit hook on every open, rename, truncate and
    removal of events.yaml, its archives and heartbeat.yaml: each must happen inside the store's
    file implementation (event_log_file, agent_registry_file)."""
    out = subprocess.run([sys.executable, "-c", _OPENS, str(LIB), str(workspace)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
