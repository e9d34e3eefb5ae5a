"""Running agent CLIs: presets for common coding agents, any custom command, timeouts, logs.

A command is a template of argv tokens; ``{task_file} {task_id} {prompt} {workdir} {agent_id}
{root}`` are filled in per token, so a path with spaces stays one argument and nothing goes
through a shell. The agent reports with marker lines at the start of a line::

    [DONE] TASK-1              finished
    [ERROR] TASK-1 reason      failed
    [WAIT] TASK-1 reason       blocked on something outside its control
    [HELP] TASK-1 question     needs an answer from the planner or an operator

Exit code and markers decide the result: a non-zero exit or an [ERROR] is a failure, a
timeout is a failure, otherwise the last marker decides and no marker at all is done.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from errors import ValidationError

__all__ = [
    "PRESETS",
    "AgentCommand",
    "AgentResult",
    "Outcome",
    "resolve_command",
    "build_prompt",
    "parse_markers",
    "run_agent",
    "AgentProcess",
    "start_agent",
    "Marker",
]

# Non-interactive modes of each CLI: one prompt in, work done, exit.
PRESETS: dict[str, str] = {
    "claude": "claude -p {prompt} --permission-mode acceptEdits",
    "codex": "codex exec --full-auto {prompt}",
    "gemini": "gemini --yolo -p {prompt}",
    "aider": "aider --yes-always --no-auto-commits --message {prompt} {task_file}",
    "ollama": "ollama run llama3.1 {prompt}",
}

_PLACEHOLDERS = ("task_file", "task_id", "prompt", "workdir", "agent_id", "root")
_MARKER = re.compile(r"^\s*\[(DONE|ERROR|WAIT|HELP|ACK)\](?:[ \t]+(\S+))?(?:[ \t]+(.*?))?\s*$", re.M)


class Outcome(str, Enum):
    DONE = "done"
    FAILED = "failed"
    WAITING = "waiting"
    HELP = "help"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class AgentCommand:
    """A command template (argv tokens with placeholders) and where it came from."""

    name: str
    template: tuple[str, ...]

    def render(self, values: Mapping[str, Any]) -> list[str]:
        out = []
        for token in self.template:
            for key in _PLACEHOLDERS:
                token = token.replace("{" + key + "}", str(values.get(key, "")))
            out.append(token)
        return out


def resolve_command(preset: Optional[str] = None, command: Optional[str] = None,
                    presets: Optional[Mapping[str, str]] = None) -> AgentCommand:
    """The command for ``--agent PRESET`` or ``--command 'CMD {task_file}'``.

    ``presets`` (from swarm.yaml ``agents.presets``) add to or override the built-in ones.
    """
    if (preset is None) == (command is None):
        raise ValidationError("give exactly one of an agent preset or a command",
                              hint=f"presets: {', '.join(sorted(PRESETS))}")
    table = dict(PRESETS)
    table.update(presets or {})
    if preset is not None:
        if preset not in table:
            raise ValidationError(f"unknown agent preset {preset!r}",
                                  hint=f"choose one of {', '.join(sorted(table))} or use --command")
        text, name = table[preset], preset
    else:
        text, name = command, "custom"
    try:
        tokens = tuple(shlex.split(text))
    except ValueError as exc:
        raise ValidationError(f"agent command does not parse: {exc}", hint="check its quoting") from None
    if not tokens:
        raise ValidationError("agent command is empty")
    return AgentCommand(name=name, template=tokens)


def build_prompt(task_id: str, task_file: str, agent_id: str) -> str:
    """The instruction every agent gets: which task file to follow and how to report."""
    return (
        f"You are {agent_id}, one of several agents working in this repository. "
        f"Do the task described in {task_file} (task {task_id}): follow its objective, "
        f"success criteria and files to modify, and change nothing outside it. "
        f"When you have finished, print a line starting with [DONE] {task_id}. "
        f"If you cannot finish, print [ERROR] {task_id} and the reason; if you are blocked on "
        f"something outside your control, print [WAIT] {task_id} and why; if you need an answer "
        f"from a person or the planner, print [HELP] {task_id} and your question."
    )


@dataclass(frozen=True)
class Marker:
    kind: str
    task_id: Optional[str]
    text: str


def parse_markers(output: str) -> list[Marker]:
    """Marker lines in ``output``, in order."""
    return [Marker(m.group(1), m.group(2), m.group(3) or "") for m in _MARKER.finditer(output)]


@dataclass
class AgentResult:
    """How one run of an agent ended."""

    outcome: Outcome
    exit_code: Optional[int]
    duration: float
    reason: str = ""
    markers: list[Marker] = field(default_factory=list)
    log_path: Optional[Path] = None
    output_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.DONE


def _decide(exit_code: Optional[int], markers: Sequence[Marker]) -> tuple[Outcome, str]:
    errors = [m for m in markers if m.kind == "ERROR"]
    if exit_code != 0:
        why = errors[-1].text if errors else ""
        return Outcome.FAILED, why or f"exit code {exit_code}"
    if errors:
        return Outcome.FAILED, errors[-1].text or "the agent reported [ERROR]"
    final = [m for m in markers if m.kind in ("DONE", "WAIT", "HELP")]
    if final and final[-1].kind == "WAIT":
        return Outcome.WAITING, final[-1].text
    if final and final[-1].kind == "HELP":
        return Outcome.HELP, final[-1].text
    return Outcome.DONE, ""


def _orphan_safe(argv: Sequence[str]) -> list[str]:
    """``argv`` started through this module's launcher, which ties the agent to our life.

    The agent runs in its own session (so a timeout can kill its whole group), which also
    means nothing stops it when the executor is killed with -9: the launcher asks Linux to
    send it SIGTERM when its parent dies (PR_SET_PDEATHSIG), then execs the agent in place.
    """
    return [sys.executable, os.path.abspath(__file__), "--launch", str(os.getpid()), "--", *argv]


def _launch(parent_pid: int, argv: Sequence[str]) -> int:
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG; it survives exec
        if os.getppid() != parent_pid:  # the executor died before we could ask
            return 128 + int(signal.SIGTERM)
    try:
        os.execvp(argv[0], list(argv))
    except OSError as exc:
        print(f"could not start {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``agents.py`` lists the presets; ``--launch PID -- CMD...`` is the internal launcher."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--launch"] and len(args) >= 4 and args[2] == "--":
        return _launch(int(args[1]), args[3:])
    if args and args[0] not in ("-h", "--help", "--json"):
        print(f"error: unknown arguments {' '.join(args)!r} (see --help)", file=sys.stderr)
        return 2
    if args[:1] == ["--json"]:
        import json

        print(json.dumps(PRESETS, indent=2))
        return 0
    print("usage: python lib/agents.py [--json]\n\nAgent presets (use with executor.py --agent NAME):")
    for name, template in sorted(PRESETS.items()):
        print(f"  {name:<8} {template}")
    print("\nPlaceholders: " + " ".join("{" + key + "}" for key in _PLACEHOLDERS))
    return 0


class AgentProcess:
    """One running agent: its own process group, output to a log file, killable as a whole."""

    def __init__(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")
        self.started = time.monotonic()
        self.cancelled = False
        if shutil.which(argv[0], path=env.get("PATH")) is None:
            self._log.write(f"could not start {argv[0]}: not found on PATH\n".encode())
            self._log.close()
            raise ValidationError(f"could not start agent command {argv[0]!r}: not found",
                                  hint="is the agent CLI installed and on PATH?")
        try:
            self.proc = subprocess.Popen(
                _orphan_safe(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a timeout kills its children too
            )
        except OSError as exc:
            self._log.write(f"could not start {argv[0]}: {exc}\n".encode())
            self._log.close()
            raise ValidationError(f"could not start agent command {argv[0]!r}: {exc.strerror}",
                                  hint="is the agent CLI installed and on PATH?") from None

    def terminate(self, grace: float = 5.0) -> None:
        """Stop the agent and everything it started: SIGTERM, then SIGKILL after ``grace``."""
        self.cancelled = True
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self._signal(signal.SIGKILL)  # whatever is left of the group, the agent's children included
        self.proc.wait()

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: Optional[float]) -> AgentResult:
        """Wait for the agent to end (killing it past ``timeout`` seconds) and judge the run."""
        timed_out = False
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            self.terminate()
        finally:
            self._log.close()
        duration = time.monotonic() - self.started
        output = self.log_path.read_bytes().decode("utf-8", errors="replace")
        markers = parse_markers(output)
        tail = "\n".join(output.splitlines()[-20:])
        if timed_out:
            outcome, reason = Outcome.TIMEOUT, f"timed out after {timeout:g}s"
        elif self.cancelled:
            outcome, reason = Outcome.CANCELLED, "stopped by a signal"
        else:
            outcome, reason = _decide(self.proc.returncode, markers)
        return AgentResult(outcome, self.proc.returncode, duration, reason, markers, self.log_path, tail)


def run_agent(command: AgentCommand, *, timeout: Optional[float] = None, **where: Any) -> AgentResult:
    """Run ``command`` for one task and wait for its result; ``where`` as for ``start_agent``."""
    return start_agent(command, **where).wait(timeout)


def start_agent(
    command: AgentCommand,
    *,
    task_id: str,
    task_file: Path,
    agent_id: str,
    root: Path,
    workdir: Optional[Path] = None,
    log_path: Path,
    env: Optional[Mapping[str, str]] = None,
) -> AgentProcess:
    """Start ``command`` for one task with the SWARM_* variables set; returns the running process."""
    workdir = workdir or root
    values = {
        "task_file": str(task_file), "task_id": task_id, "agent_id": agent_id, "root": str(root),
        "workdir": str(workdir), "prompt": build_prompt(task_id, str(task_file), agent_id),
    }
    full_env = dict(os.environ if env is None else env)
    full_env.update(SWARM_ROOT=str(root), SWARM_AGENT_ID=agent_id, SWARM_TASK_ID=task_id,
                    SWARM_TASK_FILE=str(task_file))
    return AgentProcess(command.render(values), cwd=workdir, env=full_env, log_path=log_path)


if __name__ == "__main__":
    raise SystemExit(main())
