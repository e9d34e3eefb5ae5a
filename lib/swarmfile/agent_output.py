"""Reading what an agent CLI printed: what it said, the error it reported, the tools it was refused.

An agent run's output (stdout and stderr, as kept in its run log) is read by the reader its
preset names:

- ``text``: plain output, as any command prints it; everything it printed is what it said.
- ``claude-stream-json``: Claude Code's ``-p --output-format stream-json --verbose``, one JSON
  event a line. What it said is the text blocks of every assistant message (so a marker from
  an earlier turn counts, where ``-p`` text mode keeps only the last message); the ``result``
  event carries ``is_error`` and the CLI's own error text (e.g. "Invalid API key"), and
  ``permission_denied`` events the tool calls a permission rule refused.
- ``codex-json``: ``codex exec --json`` JSONL. What it said is its ``agent_message`` items;
  ``turn.failed`` (or the last ``error`` event) is its error; items ``declined`` and patches
  "rejected by user approval settings" are refusals.
- ``gemini-stream-json``: Gemini CLI's ``-o stream-json``. What it said is its assistant
  ``message`` events (streamed in pieces, joined up to the next other event); a ``result``
  with ``status: error`` carries its error; a ``tool_result`` refused by its approval mode
  (the tool is not even registered in a headless ``auto_edit`` run) is a refusal.

In the JSON formats a line that is not JSON (a warning on stderr, a wrapper's output) is kept
as said text, so a plain ``[DONE]`` line there still counts. Nothing here decides an outcome:
``agents.py`` does, from markers in ``Transcript.text`` and the error and refusals beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Optional

__all__ = ["Transcript", "READERS", "read_output"]


@dataclass
class Transcript:
    """What one run of an agent said, the error its CLI reported, and the refused tool calls."""

    text: str = ""
    error: Optional[str] = None
    refused: list[str] = field(default_factory=list)


def _json_lines(raw: str):
    """(event, None) for each JSON-object line, (None, line) for any other non-empty line."""
    for line in raw.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("{"):
            try:
                event = json.loads(stripped)
            except ValueError:
                event = None
            if isinstance(event, dict):
                yield event, None
                continue
        yield None, line


def read_text(raw: str) -> Transcript:
    return Transcript(text=raw)


def read_claude_stream(raw: str) -> Transcript:
    said: list[str] = []
    refused: dict[str, str] = {}
    error: Optional[str] = None
    for event, line in _json_lines(raw):
        if event is None:
            said.append(line)
            continue
        kind = event.get("type")
        if kind == "assistant" and not event.get("is_api_error_message"):
            content = (event.get("message") or {}).get("content") or []
            said += [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        elif kind == "system" and event.get("subtype") == "permission_denied":
            key = str(event.get("tool_use_id") or len(refused))
            refused[key] = event.get("message") or f"{event.get('tool_name', 'a tool')} was refused"
        elif kind == "result":
            for denial in event.get("permission_denials") or []:
                if isinstance(denial, dict):
                    key = str(denial.get("tool_use_id") or len(refused))
                    refused.setdefault(key, f"{denial.get('tool_name', 'a tool')} was refused")
            if event.get("is_error"):
                text = str(event.get("result") or event.get("subtype") or "the CLI reported an error")
                status = event.get("api_error_status")
                error = f"API error {status}: {text}" if status and str(status) not in text else text
    return Transcript("\n".join(said), error, list(refused.values()))


def read_codex_json(raw: str) -> Transcript:
    said: list[str] = []
    refused: list[str] = []
    error: Optional[str] = None
    last_error: Optional[str] = None
    for event, line in _json_lines(raw):
        if event is None:
            if "rejected by user approval settings" in line:
                refused.append(line.split("error=", 1)[-1].strip())
            else:
                said.append(line)
            continue
        kind = event.get("type")
        item = event.get("item") if isinstance(event.get("item"), dict) else {}
        if kind == "item.completed" and item.get("type") == "agent_message":
            said.append(str(item.get("text") or ""))
        elif kind == "item.completed" and item.get("status") == "declined":
            refused.append(f"{item.get('type', 'a tool call')} declined: {item.get('command') or item.get('changes') or ''}")
        elif kind == "turn.failed":
            error = str((event.get("error") or {}).get("message") or "the turn failed")
        elif kind == "error":
            last_error = str(event.get("message") or "")
    if error is None and last_error and not last_error.startswith("Reconnecting"):
        error = last_error
    return Transcript("\n".join(said), error, refused)


_GEMINI_REFUSALS = ("tool_not_registered", "permission", "denied", "rejected", "not_allowed")


def read_gemini_stream(raw: str) -> Transcript:
    said: list[str] = []
    piece: list[str] = []  # the assistant message being streamed
    refused: list[str] = []
    error: Optional[str] = None
    for event, line in _json_lines(raw):
        if event is not None and event.get("type") == "message" and event.get("role") == "assistant":
            piece.append(str(event.get("content") or ""))
            continue
        if piece:
            said.append("".join(piece))
            piece = []
        if event is None:
            said.append(line)
        elif event.get("type") == "tool_result" and event.get("status") == "error":
            problem = event.get("error") if isinstance(event.get("error"), dict) else {}
            if any(word in str(problem.get("type", "")).lower() for word in _GEMINI_REFUSALS):
                refused.append(str(problem.get("message") or event.get("output") or "a tool call was refused"))
        elif event.get("type") == "result" and event.get("status") == "error":
            problem = event.get("error") if isinstance(event.get("error"), dict) else {}
            error = str(problem.get("message") or "the CLI reported an error")
    if piece:
        said.append("".join(piece))
    return Transcript("\n".join(said), error, refused)


READERS: dict[str, Callable[[str], Transcript]] = {
    "text": read_text,
    "claude-stream-json": read_claude_stream,
    "codex-json": read_codex_json,
    "gemini-stream-json": read_gemini_stream,
}


def read_output(kind: str, raw: str) -> Transcript:
    """Read ``raw`` output in format ``kind`` (a key of ``READERS``)."""
    return READERS[kind](raw)
