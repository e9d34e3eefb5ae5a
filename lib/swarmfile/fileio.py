"""Locks, atomic rewrites, line appends with torn-tail repair, and safe YAML.

The only module that touches yaml. Everything else reads and writes shared files through
these functions, so the guarantees hold everywhere:

* ``locked(target, lock_dir=...)``: an exclusive (or shared) lock on a sidecar file under
  ``lock_dir`` (locks.py, re-exported here: the one lock of every shared file).
* ``atomic_write(path, data)``: temp file in the same directory, fsync, ``os.replace``,
  fsync of the directory. Readers see the old file or the new one, never a mix.
* ``append_line(path, line, lock_dir=...)``: one ``os.write`` of one whole line under the
  lock, after repairing a torn last line left by a crash; a short write is rolled back
  (``append_whole`` is that write alone, for a caller that knows the file ends with a whole line).
  A log appended to often keeps its descriptor between appends (``take_for_append``, descriptors.py)
  and leaves ``append_state`` as the lock's note, so the next append need not check it again.
* ``load_yaml_*`` / ``dump_yaml`` / ``dump_flow``: safe loading only (libyaml when present);
  a file that does not parse raises ParseError with file and line, and is never rewritten.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISLNK
from typing import Any, Optional, Union

import yaml

from .errors import HAND_FIX, NotFoundError, ParseError, ValidationError
from .descriptors import DescriptorPool, Kept
from .flow_text import flow_text
from .locks import lock_path, locked
from .textfile import read_text, split_lines  # re-exported: reading needs no lock nor YAML (textfile.py)

__all__ = [
    "locked",
    "lock_path",
    "atomic_write",
    "append_line",
    "append_line_unlocked",
    "append_whole",
    "append_state",
    "open_for_append",
    "sync_appended",
    "take_for_append",
    "keep_for_append",
    "AppendResult",
    "kept_end",
    "last_line_start",
    "line_at",
    "tail_is_complete",
    "read_text",
    "load_yaml_text",
    "load_yaml_file",
    "dump_yaml",
    "dump_flow",
    "expect_mapping",
    "key_line",
    "split_lines",
    "MISSING",
    "YAML_ERROR",
]


PathLike = Union[str, "os.PathLike[str]"]

MISSING: Any = object()

class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader, where a scalar that looks like a date but is none (2026-13-45) is a
    YAML error at its line: PyYAML raises a bare ValueError there, which named no file or line."""

    def construct_yaml_timestamp(self, node: Any) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(None, None, f"{node.value!r} is not a date ({exc})",
                                                    node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
YAML_ERROR = yaml.YAMLError


# ---------------------------------------------------------------------------- writes


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> int:
    """Write ``data`` with one os.write; returns the count written (short writes included)."""
    return os.write(fd, data)


def atomic_write(path: PathLike, data: Union[str, bytes], *, fsync: bool = True, fsync_dir: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically: temp file, fsync, os.replace, dir fsync.

    ``fsync_dir=False`` skips the last step: after a power loss the file may then be found
    as it was before (never half-written), for files whose truth is kept elsewhere.

    A symlink at ``path`` is replaced by a regular file, never written through. On any
    error before the replace the temp file is removed and ``path`` is left exactly as it was;
    a failing directory fsync after it is logged, not raised (the new content is in place).
    """
    # Plain strings and os calls, no Path: a claim rewrites its task's Status line with this, and
    # pathlib's parsing cost as much as the write.
    target = os.fspath(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    directory = os.path.dirname(target) or "."
    tmp = os.path.join(directory, f".{os.path.basename(target)}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:  # the folder is missing: made, then the write goes on
        os.makedirs(directory, exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        try:
            st = os.lstat(target)
            if not S_ISLNK(st.st_mode):  # keep a file's mode; a symlink is replaced, its target untouched
                os.fchmod(fd, st.st_mode & 0o7777)
        except FileNotFoundError:
            pass
        view = memoryview(payload)
        while view:
            written = _write_all(fd, view)
            if written <= 0:  # pragma: no cover - os.write raises rather than return 0
                raise OSError(errno.EIO, f"write to {tmp} made no progress")
            view = view[written:]
        if fsync:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = target  # os.write/fsync errors name no file: say which
        raise
    if fsync and fsync_dir:
        try:
            _fsync_dir(directory)
        except OSError as exc:
            # The replace has happened: every reader sees the new content, so this is not a
            # failed write. Only its survival of a power loss is in doubt: say so, do not raise.
            import logging

            logging.getLogger("swarmfile").warning("%s: directory fsync failed after the write: %s", target, exc)


@dataclass(frozen=True)
class AppendResult:
    """What an append did: where the line starts, and any torn tail it repaired first."""

    offset: int
    repaired_bytes: int = 0
    torn_tail: Optional[str] = None


def last_line_start(fd: int, size: int) -> int:
    """Offset just after the last newline before ``size`` (0 when there is none)."""
    position = size
    chunk = 65536
    while position > 0:
        start = max(0, position - chunk)
        block = os.pread(fd, position - start, start)
        index = block.rfind(b"\n")
        if index >= 0:
            return start + index + 1
        position = start
    return 0


def tail_is_complete(tail: bytes) -> bool:
    """Whether a last line left without its newline is whole.

    Either an operator's editor left no newline (the line parses on its own: keep it) or a
    crash tore it mid-write (it does not parse: it is cut off). Every reader and the append
    repair use this one rule, so readers see a log exactly as the next append will leave it.
    """
    try:
        yaml.load(tail.decode("utf-8"), Loader=_Loader)
        return True
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return False


def kept_end(fd: int, size: int) -> int:
    """Where the file ends once a torn last line is cut off (``size`` when nothing is torn)."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    start = last_line_start(fd, size)
    return size if tail_is_complete(os.pread(fd, size - start, start)) else start


def line_at(fd: int, offset: int) -> int:
    """1-based line number of byte ``offset`` (reads everything before it: for error messages)."""
    count, position = 1, 0
    while position < offset:
        block = os.pread(fd, min(1 << 20, offset - position), position)
        if not block:
            break
        count += block.count(b"\n")
        position += len(block)
    return count


def _repair_tail(fd: int, path: PathLike) -> tuple[int, Optional[str]]:
    """Make the file end with a newline. Returns (bytes removed, the removed text).

    A complete last line without its newline gets one; a torn one is cut off and reported
    (see ``tail_is_complete``). Nothing before the last newline is ever touched.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0, None
    start = last_line_start(fd, size)
    tail = os.pread(fd, size - start, start)
    if tail_is_complete(tail):
        if os.write(fd, b"\n") != 1:  # pragma: no cover
            raise OSError(errno.EIO, f"could not end {path} with a newline")
        return 0, None
    os.ftruncate(fd, start)
    text = tail.decode("utf-8", errors="replace")
    import logging

    logging.getLogger("swarmfile").warning("%s: repaired a torn last line (%d bytes removed): %.200s",
                                           path, len(tail), text)
    return len(tail), text


def open_for_append(path: PathLike) -> int:
    """A descriptor to append to ``path`` (made, with its folder, when missing); never through a symlink."""
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValidationError(
                "is a symlink; refusing to append through it", path=Path(path),
                hint="replace the link with a regular file",
            ) from None
        raise


# The logs this process appends to keep their descriptors between appends (descriptors.py).
_appending = DescriptorPool(open_for_append, limit=16)


def take_for_append(path: PathLike) -> tuple[Kept, os.stat_result]:
    """A descriptor to append to ``path`` (see ``open_for_append``) and the stat of its file: one kept from
    an earlier append while the path still names that file, else a new one. The caller holds the lock,
    and gives it back with ``keep_for_append`` when done (or closes it, after a failure)."""
    return _appending.take(os.fspath(path))


def keep_for_append(path: PathLike, kept: Kept) -> None:
    """Keep a descriptor of ``take_for_append`` for the next append to ``path``."""
    _appending.give_back(os.fspath(path), kept)


def append_line_unlocked(
    path: PathLike, line: str, *, fsync: bool = True, header: Optional[str] = None, fd: Optional[int] = None,
    whole_at: Optional[int] = None,
) -> AppendResult:
    """Append one line; the caller holds the file's lock (see ``append_line``).

    ``header`` is written first when the file is new or empty (``"events:\\n"``). If the
    write comes up short, or the fsync fails, the file is cut back to its old length and
    OSError is raised: an append is all there or not there. ``fd``: a descriptor of ``open_for_append``
    the caller already has (and closes); else the file is opened here. ``whole_at``: the size of
    the file, which the caller knows ends with a whole line (see ``append_state``): no torn-tail check.
    """
    if not line.endswith("\n"):
        line += "\n"
    own = fd is None
    if fd is None:
        fd = open_for_append(path)
    try:
        if whole_at is None:
            removed, torn = _repair_tail(fd, path)
            size = os.fstat(fd).st_size
        else:
            removed, torn, size = 0, None, whole_at
        payload = line.encode("utf-8")
        if size == 0 and header:
            payload = header.encode("utf-8") + payload
        append_whole(fd, payload, size, path, fsync=fsync)
        return AppendResult(offset=size, repaired_bytes=removed, torn_tail=torn)
    finally:
        if own:
            os.close(fd)


def append_whole(fd: int, payload: bytes, size: int, path: PathLike, *, fsync: bool = False) -> int:
    """Append ``payload`` (whole lines) in one ``os.write`` to the file open at ``fd`` (``open_for_append``),
    which is ``size`` bytes long and ends with a whole line; the caller holds its lock. Returns where the
    file now ends.

    If the write comes up short, or fails, or (``fsync``) the fsync fails, the file is cut back to
    ``size`` and OSError raised, naming ``path``: an append is all there or not there.
    """
    try:
        written = _write_all(fd, payload)
        if written != len(payload):
            raise OSError(errno.EIO, f"short write to {path} ({written} of {len(payload)} bytes)")
        if fsync:
            os.fsync(fd)
    except OSError as exc:
        os.ftruncate(fd, size)  # roll back the partial line: all or nothing
        if exc.filename is None:
            exc.filename = os.fspath(path)
        raise
    return size + written


def append_state(st: os.stat_result) -> bytes:
    """A file's stat key as an append left it (inode, size, mtime, ctime), to leave as a lock note.

    The next holder of the lock that finds the file with this key knows it is byte for byte as
    that append left it (any write changes the size or the ctime, which no one can set), so it
    need not check it again. One caveat, as with every stat key: a same-size rewrite within
    one tick of a kernel with coarse timestamps would go unseen (Linux stamps a file whose
    times were read with fine-grained ones since 6.13).
    """
    return b"append %d %d %d %d %d" % (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def append_line(
    path: PathLike,
    line: str,
    *,
    lock_dir: PathLike,
    timeout: float = 30.0,
    fsync: bool = True,
    header: Optional[str] = None,
) -> AppendResult:
    """Append one whole line to ``path`` under its lock (see ``append_line_unlocked``)."""
    with locked(path, lock_dir=lock_dir, timeout=timeout):
        return append_line_unlocked(path, line, fsync=fsync, header=header)


def sync_appended(fd: int, start: int, end: int, *, relock: Any, close: bool = True) -> None:
    """fsync an append made under a lock with ``fsync=False``, after letting the lock go; closes ``fd``
    (with ``close=False`` only when the fsync failed: a descriptor kept for the next append is not).

    ``fd`` is a descriptor of the file, open for writing, opened while the lock was held (it follows the file
    through a rename, such as a log rotation), the line at bytes ``start..end``. fsyncing
    after the lock lets writers waiting for it append meanwhile, and the fsyncs of several
    writers then share one flush of the disk (a group commit): under the lock each queued a
    flush of its own. Another process may read the line before it is durable; that is safe
    because whatever it makes durable on the strength of it is a later line of the same file,
    and an fsync makes every earlier line durable too. If the fsync fails the line is taken
    back, under ``relock()`` (the lock's context manager), while nothing follows it, and the
    OSError is raised: the append is all there or not there, as when it was fsynced under the lock.
    """
    try:
        os.fsync(fd)
    except BaseException as exc:
        try:
            if isinstance(exc, OSError):
                with relock():
                    if os.fstat(fd).st_size == end:
                        os.ftruncate(fd, start)
        finally:
            os.close(fd)
        raise
    if close:
        os.close(fd)


# ---------------------------------------------------------------------------- YAML


def key_line(text: str, key: Any, *, nested: bool = False, start: int = 0) -> Optional[int]:
    """The line where ``key:`` is written (at column 0, or indented with ``nested``) at or after
    offset ``start``; best effort, for error messages. None when not found."""
    indent = r"[ \t]+" if nested else ""
    found = re.compile(rf"^{indent}['\"]?{re.escape(str(key))}['\"]?[ \t]*:", re.M).search(text, start)
    return text.count("\n", 0, found.start()) + 1 if found else None


# Limits that keep a hostile or broken file from taking the process down. libyaml's composer
# recurses in C: tens of thousands of nested levels crash the interpreter (no RecursionError),
# and a "billion laughs" document of aliases expands to more nodes than memory holds.
_MAX_FLOW_DEPTH = 1000
_MAX_NODES_VIA_ALIASES = 1_000_000
_DEEP_BLOCK = re.compile(r"^(?:[ \t]*-[ \t]+){200}|^[ \t]{1000}", re.M)
_BRACKET = re.compile(r"[\[\]{}]")


def _too_deep(text: str) -> bool:
    if _DEEP_BLOCK.search(text):
        return True
    if text.count("[") + text.count("{") < _MAX_FLOW_DEPTH:
        return False  # cannot nest deeper than it has brackets: the usual, cheap answer
    depth = 0
    for match in _BRACKET.finditer(text):  # counts brackets in quoted strings too: errs towards refusing
        if match.group() in "[{":
            depth += 1
            if depth > _MAX_FLOW_DEPTH:
                return True
        elif depth:
            depth -= 1
    return False


def _alias_expansion(text: str) -> int:
    """How many nodes the document holds once its aliases are expanded (walks parser events)."""
    sizes: dict[str, int] = {}
    stack: list[list] = [[None, 0]]
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            stack.append([event.anchor, 1])
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, count = stack.pop()
            if anchor:
                sizes[anchor] = count
            stack[-1][1] += count
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                sizes[event.anchor] = 1
            stack[-1][1] += 1
        elif isinstance(event, yaml.AliasEvent):
            stack[-1][1] += sizes.get(event.anchor, 1)
        if stack[-1][1] > _MAX_NODES_VIA_ALIASES:
            break
    return stack[0][1] if len(stack) == 1 else max(entry[1] for entry in stack)


def load_yaml_text(text: str, path: Optional[PathLike] = None) -> Any:
    """Parse YAML safely; ParseError with the file and line where it went wrong.

    Also refused, before parsing: nesting deeper than libyaml can take without crashing the
    interpreter, and aliases that would expand past a million nodes (a "billion laughs").
    """
    if _too_deep(text):
        raise ParseError(f"nested deeper than {_MAX_FLOW_DEPTH} levels", path=path or "<text>",
                         hint="a broken or hostile file; fix or restore it, it was not changed")
    if "&" in text and "*" in text:
        try:
            if _alias_expansion(text) > _MAX_NODES_VIA_ALIASES:
                raise ParseError(f"aliases expand to more than {_MAX_NODES_VIA_ALIASES:,} nodes",
                                 path=path or "<text>", hint="a broken or hostile file; it was not changed")
        except yaml.YAMLError:
            pass  # the parse below reports it with its line
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc).splitlines()[0]
        if mark is not None:
            line: Optional[int] = mark.line + 1
        elif isinstance(getattr(exc, "position", None), int):  # ReaderError: a forbidden character
            line = text.count("\n", 0, exc.position) + 1
        else:
            line = None
        raise ParseError(
            f"does not parse as YAML: {problem}",
            path=path or "<text>",
            line=line,
            hint=HAND_FIX,
        ) from None
    except RecursionError:
        raise ParseError("nesting too deep to parse", path=path or "<text>",
                         hint=HAND_FIX) from None


def load_yaml_file(path: PathLike, *, default: Any = MISSING) -> Any:
    """Parse the YAML file at ``path``.

    A missing file returns ``default`` when one is given, else raises NotFoundError.
    """
    try:
        text = read_text(path)
    except FileNotFoundError:
        if default is MISSING:
            raise NotFoundError("does not exist", path=path) from None
        return default
    return load_yaml_text(text, path)


def expect_mapping(data: Any, path: PathLike, what: str, *, line: Optional[int] = None) -> dict:
    """``data`` if it is a mapping, else ValidationError naming the file and what belongs there."""
    if not isinstance(data, dict):
        got = "nothing" if data is None else f"a {type(data).__name__}"
        raise ValidationError(
            f"{what} must be a mapping, got {got}", path=path, line=line,
            hint=HAND_FIX,
        )
    return data


class _BlockDumper(_BaseDumper):  # type: ignore[misc, valid-type]
    """Block style for whole files; strings that look like times stay quoted strings."""


class _FlowDumper(_BaseDumper):  # type: ignore[misc, valid-type]
    """One-line flow style: strings with line breaks become double-quoted escapes."""


def _represent_str_one_line(dumper: Any, value: str) -> Any:
    style = '"' if any(ch in value for ch in "\n\r\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_FlowDumper.add_representer(str, _represent_str_one_line)


def dump_yaml(data: Any) -> str:
    """``data`` as block-style YAML text, keys in their given order."""
    return yaml.dump(data, Dumper=_BlockDumper, default_flow_style=False, sort_keys=False,
                     allow_unicode=True, width=100)


def dump_flow(data: Any) -> str:
    """``data`` as one line of flow-style YAML, without the newline."""
    fast = flow_text(data)
    if fast is not None:
        return fast
    text = yaml.dump(data, Dumper=_FlowDumper, default_flow_style=True, sort_keys=False,
                     allow_unicode=True, width=2**31 - 1)
    text = text.rstrip("\n")
    if text.endswith("\n...") or "\n" in text:  # pragma: no cover - guarded by the representer
        raise ValueError(f"value does not fit on one line: {data!r:.80}")
    return text
