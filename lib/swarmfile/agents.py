"""Running agent CLIs: presets for common coding agents, any custom command, timeouts, logs.

A command is a template of argv tokens; ``{task_file} {task_id} {prompt} {workdir} {agent_id}
{root}`` are filled in per token, so a path with spaces stays one argument and nothing goes
through a shell. The agent reports with marker lines at the start of a line::

    [DONE] TASK-1              finished
    [ERROR] TASK-1 reason      failed
    [WAIT] TASK-1 reason       blocked on something outside its control
    [HELP] TASK-1 question     needs an answer from the planner or an operator

Exit code and markers decide the result: a non-zero exit or an [ERROR] is a failure, a
timeout is a failure, otherwise the last marker decides and no marker at all is done. A
preset also names how its CLI's output is read (``agent_output.READERS``): Claude Code and
Codex print JSON events, from which the markers of every turn, the CLI's own error text and
its refused tool calls are taken. A run that reported an error is a failure with that text; a
run with refused tool calls and no [DONE] is a failure, never done.

The prompt carries the task's text, so an agent in a worktree (whose task file lies in the
root checkout, outside its working directory) never needs to read outside that directory.
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

from . import agent_output
from .errors import ValidationError

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
    "Preset",
]


@dataclass(frozen=True)
class Preset:
    """A built-in (or swarm.yaml) way to run one CLI headless."""

    command: str  # argv template with placeholders
    output: str = "text"  # how its output is read: a key of agent_output.READERS
    env: Mapping[str, str] = field(default_factory=dict)  # defaults for its environment (the caller's win)

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "output": self.output, "env": dict(self.env)}


# Non-interactive modes of each CLI: one prompt in, work done, exit. Checked against the pinned
# CLIs (tools/agent-clis/package.json) by tests/realcli; aider's against aider-chat 0.86.2's parser.
PRESETS: dict[str, Preset] = {
    # acceptEdits: file edits inside the working directory are allowed, other tools refused.
    # One retry: an API error fails the run in seconds with the CLI's message (the executor
    # retries the task with backoff) instead of minutes of silent retrying.
    "claude": Preset("claude -p {prompt} --permission-mode acceptEdits --output-format stream-json --verbose",
                     output="claude-stream-json", env={"CLAUDE_CODE_MAX_RETRIES": "1"}),
    # --full-auto is gone from codex exec (0.17x); workspace-write lets it edit its working directory.
    "codex": Preset("codex exec --json --sandbox workspace-write --skip-git-repo-check {prompt}",
                    output="codex-json"),
    # auto_edit: edits approved, shell and web refused; --skip-trust: a fresh worktree was never trusted.
    "gemini": Preset("gemini --approval-mode auto_edit --skip-trust --output-format stream-json -p {prompt}",
                     output="gemini-stream-json"),
    "aider": Preset("aider --yes-always --no-auto-commits --no-check-update --no-show-release-notes "
                    "--no-pretty --message {prompt}"),
    "ollama": Preset("ollama run llama3.1 {prompt}"),
}

_PLACEHOLDERS = ("task_file", "task_id", "prompt", "workdir", "agent_id", "root")
# A marker starts its line, after spaces and the bullet a TUI draws before an assistant message
# (Claude Code: "● ", older versions "⏺ "), so "● [DONE] TASK-7" on its screen counts.
_MARKER = re.compile(r"^[ \t]*(?:[●⏺][ \t]*)?\[(DONE|ERROR|WAIT|HELP|ACK)\](?:[ \t]+(\S+))?(?:[ \t]+(.*?))?\s*$", re.M)


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
    output: str = "text"  # how its output is read: a key of agent_output.READERS
    env: tuple[tuple[str, str], ...] = ()  # environment defaults of its preset

    def render(self, values: Mapping[str, Any]) -> list[str]:
        out = []
        for token in self.template:
            for key in _PLACEHOLDERS:
                token = token.replace("{" + key + "}", str(values.get(key, "")))
            out.append(token)
        return out


def _as_preset(name: str, given: Any) -> Preset:
    """A swarm.yaml preset: a command string, or a mapping ``{command, output, env}``."""
    if isinstance(given, Preset):
        return given
    if isinstance(given, str):
        return Preset(given)
    if isinstance(given, Mapping) and isinstance(given.get("command"), str):
        unknown = set(given) - {"command", "output", "env"}
        output = given.get("output", "text")
        env = given.get("env") or {}
        if unknown or output not in agent_output.READERS or not isinstance(env, Mapping):
            raise ValidationError(f"swarm.yaml agents.presets.{name} is malformed",
                                  hint=f"give a command string or {{command, output, env}}; output is one of "
                                       f"{', '.join(agent_output.READERS)}")
        return Preset(given["command"], output, {str(k): str(v) for k, v in env.items()})
    raise ValidationError(f"swarm.yaml agents.presets.{name} must be a command string or a mapping with 'command'")


def resolve_command(preset: Optional[str] = None, command: Optional[str] = None,
                    presets: Optional[Mapping[str, Any]] = None) -> AgentCommand:
    """The command for ``--agent PRESET`` or ``--command 'CMD {task_file}'``.

    ``presets`` (from swarm.yaml ``agents.presets``) add to or override the built-in ones; a
    ``--command`` is read as plain text.
    """
    if (preset is None) == (command is None):
        raise ValidationError("give exactly one of an agent preset or a command",
                              hint=f"presets: {', '.join(sorted(PRESETS))}")
    table = dict(PRESETS)
    table.update(presets or {})
    chosen = Preset(command or "")
    if preset is not None:
        if preset not in table:
            raise ValidationError(f"unknown agent preset {preset!r}",
                                  hint=f"choose one of {', '.join(sorted(table))} or use --command")
        chosen, name = _as_preset(preset, table[preset]), preset
    else:
        name = "custom"
    text = chosen.command
    try:
        tokens = tuple(shlex.split(text))
    except ValueError as exc:
        raise ValidationError(f"agent command does not parse: {exc}", hint="check its quoting") from None
    if not tokens:
        raise ValidationError("agent command is empty")
    return AgentCommand(name=name, template=tokens, output=chosen.output, env=tuple(sorted(chosen.env.items())))


PROMPT_TASK_CHARS = 32_000  # task text inlined in the prompt beyond this is cut (argv has limits)


def build_prompt(task_id: str, task_file: str, agent_id: str, task_text: Optional[str] = None,
                 workdir: Optional[str] = None) -> str:
    """The instruction every agent gets: its task (text inline) and how to report.

    The task file is named only when it lies inside ``workdir``: an agent in a worktree is
    never sent outside its working directory to read it.
    """
    inside = workdir is None or Path(task_file).resolve().is_relative_to(Path(workdir).resolve())
    where = f"described in {task_file} (task {task_id})" if inside else f"{task_id}, whose task file is quoted below"
    prompt = (
        f"You are {agent_id}, one of several agents working in this repository. "
        f"Do the task {where}: follow its objective, "
        f"success criteria and files to modify, and change nothing outside it. "
        f"When you have finished, print a line starting with [DONE] {task_id}. "
        f"If you cannot finish, print [ERROR] {task_id} and the reason; if you are blocked on "
        f"something outside your control, print [WAIT] {task_id} and why; if you need an answer "
        f"from a person or the planner, print [HELP] {task_id} and your question."
    )
    if task_text:
        cut = task_text[:PROMPT_TASK_CHARS]
        more = "\n[... the rest of the task file is cut here ...]" if len(task_text) > len(cut) else ""
        prompt += f"\n\nThe task file ({Path(task_file).name}):\n<task>\n{cut.strip()}{more}\n</task>"
    return prompt


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


def _decide(exit_code: Optional[int], markers: Sequence[Marker],
            said: Optional[agent_output.Transcript] = None) -> tuple[Outcome, str]:
    said = said or agent_output.Transcript()
    errors = [m for m in markers if m.kind == "ERROR"]
    if exit_code != 0:
        why = errors[-1].text if errors else ""
        return Outcome.FAILED, why or said.error or f"exit code {exit_code}"
    if errors:
        return Outcome.FAILED, errors[-1].text or "the agent reported [ERROR]"
    if said.error:
        return Outcome.FAILED, said.error
    final = [m for m in markers if m.kind in ("DONE", "WAIT", "HELP")]
    if said.refused and not any(m.kind == "DONE" for m in final):
        return Outcome.FAILED, (f"{len(said.refused)} tool call(s) refused and no [DONE]: {said.refused[0]}"
                                " (see the preset's permission mode)")
    if final and final[-1].kind == "WAIT":
        return Outcome.WAITING, final[-1].text
    if final and final[-1].kind == "HELP":
        return Outcome.HELP, final[-1].text
    return Outcome.DONE, ""


# Run by path, as a script of its own: it imports nothing of the package, so it starts fast.
_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch.py")


def _orphan_safe(argv: Sequence[str]) -> list[str]:
    """``argv`` started through this module's launcher, which ties the agent to our life.

    The agent runs in its own session (so a timeout can kill its whole group), which also
    means nothing stops it when the executor is killed with -9: the launcher asks Linux to
    send it SIGTERM when its parent dies (PR_SET_PDEATHSIG), then execs the agent in place.
    """
    return [sys.executable, _LAUNCHER, str(os.getpid()), "--", *argv]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``agent_presets.py`` lists the presets."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in ("-h", "--help", "--json"):
        print(f"error: unknown arguments {' '.join(args)!r} (see --help)", file=sys.stderr)
        return 2
    if args[:1] == ["--json"]:
        import json

        print(json.dumps({name: preset.to_dict() for name, preset in PRESETS.items()}, indent=2))
        return 0
    print("usage: python lib/agent_presets.py [--json]\n\nAgent presets (use with executor.py --agent NAME):")
    for name, preset in sorted(PRESETS.items()):
        extra = f"   [output: {preset.output}]" if preset.output != "text" else ""
        print(f"  {name:<8} {preset.command}{extra}")
    print("\nPlaceholders: " + " ".join("{" + key + "}" for key in _PLACEHOLDERS))
    return 0


class AgentProcess:
    """One running agent: its own process group, output to a log file, killable as a whole."""

    def __init__(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path,
                 output: str = "text") -> None:
        self.log_path = log_path
        self.output = output
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

    def _summarize(self, said: agent_output.Transcript) -> None:
        """Append what the agent said to its log: a person reads that, not the JSON events above it."""
        try:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(_summary(self.output, said))
        except OSError:
            pass  # the log is for people; the result does not depend on it

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
        said = agent_output.read_output(self.output, output)
        markers = parse_markers(said.text)
        # The tail is for people: what the agent said, and its error, rather than raw JSON events.
        readable = output if self.output == "text" else "\n".join(filter(None, [said.text, said.error]))
        tail = "\n".join(readable.splitlines()[-20:])
        if self.output != "text":
            self._summarize(said)
        if timed_out:
            outcome, reason = Outcome.TIMEOUT, f"timed out after {timeout:g}s"
        elif self.cancelled:
            outcome, reason = Outcome.CANCELLED, "stopped by a signal"
        else:
            outcome, reason = _decide(self.proc.returncode, markers, said)
        return AgentResult(outcome, self.proc.returncode, duration, reason, markers, self.log_path, tail)


def _summary(kind: str, said: agent_output.Transcript) -> str:
    lines = [f"--- swarm: what the agent said (read from its {kind} output above) ---", said.text.rstrip()]
    if said.refused:
        lines += ["--- swarm: refused tool calls ---", *said.refused]
    if said.error:
        lines += ["--- swarm: the CLI reported an error ---", said.error]
    return "\n".join(lines) + "\n"


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
    """Start ``command`` for one task with the SWARM_* variables set; returns the running process.

    The preset's environment defaults are added where ``env`` does not set them.
    """
    workdir = workdir or root
    try:
        task_text: Optional[str] = Path(task_file).read_text(encoding="utf-8", errors="replace")
    except OSError:
        task_text = None  # the agent still gets the file's name; a missing task fails in the agent
    values = {
        "task_file": str(task_file), "task_id": task_id, "agent_id": agent_id, "root": str(root),
        "workdir": str(workdir), "prompt": build_prompt(task_id, str(task_file), agent_id, task_text, str(workdir)),
    }
    full_env = dict(os.environ if env is None else env)
    for key, value in command.env:
        full_env.setdefault(key, value)
    full_env.update(SWARM_ROOT=str(root), SWARM_AGENT_ID=agent_id, SWARM_TASK_ID=task_id,
                    SWARM_TASK_FILE=str(task_file))
    return AgentProcess(command.render(values), cwd=workdir, env=full_env, log_path=log_path, output=command.output)
