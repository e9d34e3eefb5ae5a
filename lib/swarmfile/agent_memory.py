"""Per-agent memory files: a scratchpad, subtasks and notes an agent keeps between runs.

One Markdown file per agent, ``.swarm/agents/<agent>.md`` (or under ``memory.directory``
in swarm.yaml, relative to the root)::

    # Memory: executor-1

    ## Scratchpad

    ## Subtasks

    ## Notes

    - the API needs a token

Sections are the ``## `` headings (``###`` and deeper belong to the section above; headings
inside code fences do not count); names match ignoring case. A section that is written but
missing is added at the end of the file. A write changes only the lines of its own section:
sections a person added, and everything else in the file, stay byte for byte. Every write
takes the file's lock, re-reads it and replaces it atomically.

A file that is empty, not UTF-8, has one section twice or names another agent in its title
raises ParseError/ValidationError and is never written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from .config import Config, load_config, validate_id
from .errors import NotFoundError, ParseError, ValidationError
from .fileio import atomic_write, locked, read_text, split_lines

__all__ = ["SECTIONS", "memory_path", "read_memory", "append_memory", "replace_section", "clear_memory", "main"]

PathLike = Union[str, "os.PathLike[str]"]

SECTIONS = ("Scratchpad", "Subtasks", "Notes")  # every memory file has these, in this order

_SECTION = re.compile(r"##[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_TITLE = re.compile(r"#[ \t]+Memory:[ \t]*(.*?)[ \t]*$", re.I)
_FENCE = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})[ \t]*([^`]*?)[ \t]*$")
_NAME = re.compile(r"[^\s#][^\n\r]{0,79}")


# ---------------------------------------------------------------------------- where


def _directory(cfg: Config) -> Path:
    directory = cfg.get("memory", "directory")
    if directory is None:
        return cfg.runtime_dir / "agents"
    if not isinstance(directory, str) or not directory.strip():
        raise ValidationError(f"'memory.directory' must be a path, got {directory!r}", path=cfg.root / "swarm.yaml")
    path = Path(os.path.expanduser(directory))
    return path if path.is_absolute() else cfg.root / path


def _where(agent: str, root: Optional[PathLike]) -> tuple[Config, Path]:
    validate_id(agent, "agent id")
    cfg = load_config(root=root)
    return cfg, _directory(cfg) / f"{agent}.md"


def memory_path(agent: str, *, root: Optional[PathLike] = None) -> Path:
    """The memory file of ``agent`` (it may not exist yet)."""
    return _where(agent, root)[1]


# ---------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Section:
    name: str  # canonical for the standard sections, else as written
    heading: int  # 0-based index of the heading line
    end: int  # index just past the body


def _canonical(name: str) -> str:
    wanted = " ".join(name.split()).lower()
    return next((known for known in SECTIONS if known.lower() == wanted), " ".join(name.split()))


def _unfenced(lines: list[str]) -> tuple[list[tuple[int, str]], bool]:
    """The (index, line) pairs outside code fences, and whether a fence is left open."""
    outside: list[tuple[int, str]] = []
    fence: Optional[tuple[str, int]] = None
    for index, raw in enumerate(lines):
        line = raw.rstrip("\n").rstrip("\r")
        marker = _FENCE.match(line)
        if marker:
            mark, info = marker.group(1), marker.group(2)
            if fence is None:
                fence = (mark[0], len(mark))
            elif not info and mark[0] == fence[0] and len(mark) >= fence[1]:
                fence = None
        elif fence is None:
            outside.append((index, line))
    return outside, fence is not None


def _parse(lines: list[str], path: PathLike, agent: str) -> list[_Section]:
    if not "".join(lines).strip():
        raise ParseError("memory file is empty", path=path, line=1,
                         hint="restore it, or delete it to start an empty memory")
    found: list[tuple[str, int]] = []
    titled = False
    for index, line in _unfenced(lines)[0]:
        if not titled and line.strip():
            titled = True
            title = _TITLE.match(line.lstrip("\ufeff"))
            owner = (title.group(1).split() or [""])[0].strip("`") if title else agent
            if owner != agent:
                raise ValidationError(f"this is the memory of {owner!r}, not of {agent!r}", path=path,
                                      line=index + 1, hint="move the file to the right name, or fix its title")
        heading = _SECTION.match(line)
        if heading:
            found.append((heading.group(1), index))
    sections: list[_Section] = []
    seen: dict[str, int] = {}
    for number, (name, heading_at) in enumerate(found):
        key = _canonical(name).lower()
        if key in seen:
            raise ParseError(f"section {name!r} appears twice (lines {seen[key] + 1} and {heading_at + 1})",
                             path=path, line=heading_at + 1, hint="merge the two sections by hand")
        seen[key] = heading_at
        end = found[number + 1][1] if number + 1 < len(found) else len(lines)
        sections.append(_Section(_canonical(name), heading_at, end))
    return sections


def _trimmed(lines: list[str]) -> list[str]:
    """``lines`` without the blank lines around them."""
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _text(lines: list[str]) -> str:
    return "\n".join(line.rstrip("\n").rstrip("\r") for line in _trimmed(lines))


def _sections(lines: list[str], parsed: list[_Section]) -> dict[str, str]:
    result = {s.name: _text(lines[s.heading + 1:s.end]) for s in parsed}
    for name in SECTIONS:
        result.setdefault(name, "")
    return result


def _load(path: Path, agent: str) -> Optional[tuple[list[str], list[_Section]]]:
    try:
        text = read_text(path)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ParseError("is a directory, not a memory file", path=path) from None
    lines = split_lines(text)
    return lines, _parse(lines, path, agent)


def _skeleton(agent: str) -> str:
    return f"# Memory: {agent}\n" + "".join(f"\n## {name}\n" for name in SECTIONS)


# ---------------------------------------------------------------------------- reading


def read_memory(agent: str, section: Optional[str] = None,
                *, root: Optional[PathLike] = None) -> Union[dict[str, str], str]:
    """All sections of ``agent``'s memory as {name: text} in file order, or one section's text.

    The standard sections read as "" when absent; NotFoundError for any other section name
    that is not in the file.
    """
    _, path = _where(agent, root)
    loaded = _load(path, agent)
    texts = _sections(*loaded) if loaded is not None else {name: "" for name in SECTIONS}
    if section is None:
        return texts
    name = _canonical(_section_name(section))
    for written, text in texts.items():
        if written.lower() == name.lower():
            return text
    raise NotFoundError(f"no section {section!r} in the memory of {agent}", path=path,
                        hint="sections: " + ", ".join(texts))


# ---------------------------------------------------------------------------- writing


def _section_name(section: str) -> str:
    name = " ".join(str(section).split())
    if not _NAME.fullmatch(name) or "\n" in str(section) or "\r" in str(section):
        raise ValidationError(f"invalid section name {str(section)[:60]!r}",
                              hint="one line of up to 80 characters, not starting with '#'")
    return name


def _body_lines(text: str) -> list[str]:
    if not isinstance(text, str):
        raise ValidationError(f"memory text must be a string, got {type(text).__name__}")
    return _trimmed(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))


Change = Callable[[list[str], str], list[str]]  # (old body lines, newline) -> new body lines


def _apply(lines: list[str], parsed: list[_Section], name: str, change: Change, path: Path,
           agent: str) -> tuple[list[str], list[_Section]]:
    """``lines`` with the body of section ``name`` set to ``change(...)``, and their sections."""
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    target = next((s for s in parsed if s.name.lower() == name.lower()), None)
    added = target is None
    if added and not change([], newline):
        return lines, parsed  # an absent section is already empty
    lines = list(lines)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += newline
    if target is None:
        lines += ([newline] if lines and lines[-1].strip() else []) + [f"## {name}{newline}"]
        target = _Section(name, len(lines) - 1, len(lines))
    kept = change(lines[target.heading + 1:target.end], newline)
    follows = target.end < len(lines)
    body = ([newline] + kept if kept else []) + ([newline] if follows else [])
    lines[target.heading + 1:target.end] = body
    after = _parse(lines, path, agent)
    # A line like '## x' or an unclosed ``` fence in the text would move section borders.
    if (_unfenced(kept)[1] or [s.name for s in after] != [s.name for s in parsed] + ([name] if added else [])
            or _sections(lines, after)[target.name] != _text(kept)):
        raise ValidationError("the text would move the section borders (a '## ' line or an unclosed code "
                              "fence)", path=path, hint="indent such lines or close the fence")
    return lines, after


def _write(agent: str, changes: list[tuple[str, Change]], root: Optional[PathLike]) -> dict[str, str]:
    """Apply ``changes`` to the memory file in one locked re-read and atomic write."""
    names = [_canonical(_section_name(name)) for name, _ in changes]
    cfg, path = _where(agent, root)
    with locked(path, lock_dir=cfg.lock_dir, timeout=cfg.lock_timeout):
        loaded = _load(path, agent)
        original = "".join(loaded[0]) if loaded is not None else _skeleton(agent)
        lines = split_lines(original)
        parsed = loaded[1] if loaded is not None else _parse(lines, path, agent)
        for name, (_, change) in zip(names, changes):
            lines, parsed = _apply(lines, parsed, name, change, path, agent)
        updated = "".join(lines)
        if updated != original:  # a missing file that would only get the empty skeleton stays missing
            atomic_write(path, updated)
    return _sections(lines, parsed)


def append_memory(agent: str, section: str, text: str, *, root: Optional[PathLike] = None) -> dict[str, str]:
    """Add ``text`` (one or more lines) at the end of ``section``; returns all sections after."""
    new = _body_lines(text)
    if not new:
        raise ValidationError("nothing to append: the text is blank")

    def content(old: list[str], newline: str) -> list[str]:
        return _trimmed(old) + [line + newline for line in new]

    return _write(agent, [(section, content)], root)


def replace_section(agent: str, section: str, text: str, *, root: Optional[PathLike] = None) -> dict[str, str]:
    """Replace the text of ``section`` (blank text empties it); returns all sections after."""
    new = _body_lines(text)
    return _write(agent, [(section, lambda old, newline: [line + newline for line in new])], root)


def clear_memory(agent: str, section: Optional[str] = None, *, root: Optional[PathLike] = None) -> dict[str, str]:
    """Empty one section, or (``section`` None) the standard ones; other sections are kept.

    A memory file that does not exist is not created. Returns all sections after.
    """
    names = [section] if section is not None else list(SECTIONS)
    return _write(agent, [(name, lambda old, newline: []) for name in names], root)


# ---------------------------------------------------------------------------- command line


def _build_parser():
    from .cli import parser

    top = parser("agent_memory.py", "Show and edit an agent's memory file (scratchpad, subtasks, notes).")
    top.epilog = "TEXT '-' reads the text from stdin."
    sub = top.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="print the memory, or one section")
    show.add_argument("agent", metavar="AGENT")
    show.add_argument("--section", metavar="S", help="only this section")
    for command, what in (("append", "add lines at the end of a section"),
                          ("replace", "replace the text of a section")):
        edit = sub.add_parser(command, help=what)
        edit.add_argument("agent", metavar="AGENT")
        edit.add_argument("section", metavar="SECTION")
        edit.add_argument("text", metavar="TEXT")
    clear = sub.add_parser("clear", help="empty the standard sections, or one section")
    clear.add_argument("agent", metavar="AGENT")
    clear.add_argument("--section", metavar="S", help="only this section")
    return top


def _run(args) -> int:
    import sys

    from .cli import print_json

    section = getattr(args, "section", None)
    if args.command == "show":
        shown = read_memory(args.agent, section, root=args.root)
    elif args.command == "clear":
        clear_memory(args.agent, section, root=args.root)
        shown = read_memory(args.agent, section, root=args.root)
    else:
        text = sys.stdin.read() if args.text == "-" else args.text
        write = append_memory if args.command == "append" else replace_section
        write(args.agent, section, text, root=args.root)
        shown = read_memory(args.agent, section, root=args.root)
    if args.json:
        print_json({"agent": args.agent, "path": str(memory_path(args.agent, root=args.root)),
                    **({"section": section, "text": shown} if section is not None else {"sections": shown})})
    elif args.command == "show":
        if isinstance(shown, str):
            if shown:
                print(shown)
        else:
            print("\n\n".join(f"## {name}" + (f"\n\n{text}" if text else "") for name, text in shown.items()))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """``agent_memory.py show|append|replace|clear ...``; exit 0 ok, 2 bad input."""
    from .cli import run

    args = _build_parser().parse_args(argv)
    return run(lambda: _run(args))
