"""File reservations: which agent may edit which paths of the repository, and until when.

An agent reserves glob patterns before it edits: exclusively (no other agent may hold an
overlapping pattern) or shared (others may share it; nobody may take it exclusively). It ends
on release, when its TTL runs out, when its task ends (``release_for_task``), or at once when
its holder is a dead process on this host.

Patterns are repo-relative globs (syntax and overlap rule in globs.py, re-exported here): a
pattern without wildcards covers everything beneath it, so reserving a directory reserves its
contents. Two reservations clash when their patterns overlap, or when the files that exist now
and both match are one file by identity (device, inode): two spellings of one file (a
symlinked directory, a case-insensitive file system, a hard link) clash as well.

The reservations are kept by the workspace's ``ReservationTable`` (reservation_store.py):
``.swarm/reservations.yaml`` by default, the Redis server for a Redis ``backend:``
(redis_reservations.py). Every change is one atomic read-check-write of the whole table (under
the file's lock; a WATCH/MULTI transaction on Redis), so two agents can never both hold
overlapping exclusive patterns; expiries are judged by the table's clock (the server's on Redis)
unless ``now`` is given. ``files_locked`` in this host's agent-state.yaml mirrors each agent's
live patterns: widened before a reservation is written, narrowed after one is removed (under
the file's lock, for files), so it never shows less than is held. Lock order:
reservations.yaml, then agent-state.yaml.

Errors (all SwarmError): ReservationConflict naming the holders; ValidationError for a bad
pattern, id or TTL, or a reservations file of the wrong shape; ParseError for one that does not
parse (neither is ever rewritten); LeaseLost when renewing a reservation that ended; LockTimeout.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from . import stores
from .cli import module_argv
from .clock import HOSTNAME, format_ts, in_seconds, parse_ts, utc_now
from .config import Config, load_config, validate_id
from .errors import LeaseLost, ReservationConflict, SwarmError, ValidationError
from .fileio import atomic_write
from .globs import (compile_pattern, escape, normalize_pattern, pattern_matches, patterns_for_task,
                   patterns_overlap)
from .liveness import my_identity, process_start_time
from .reservation_store import Reservation, ReservationTable

__all__ = [
    "Reservation", "Overlap", "ReservationConflict", "reserve", "release", "release_all",
    "release_for_task", "renew", "reap", "list_reservations", "find_holders", "check_commit",
    "install_hook", "patterns_for_task", "normalize_pattern", "pattern_matches", "patterns_overlap",
    "main",
]

log = logging.getLogger("swarmfile")

PathLike = Union[str, "os.PathLike[str]"]


# ---------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Overlap:
    """A pattern asked for that clashes with a pattern another agent holds."""

    holder: Reservation
    pattern: str  # the one asked for
    held: str  # the holder's
    files: tuple[str, ...] = ()  # files that exist now and both cover

    def __str__(self) -> str:
        task = f"task {self.holder.task_id}, " if self.holder.task_id else ""
        text = (f"{self.pattern!r} overlaps {self.held!r} held {self.holder.mode} by "
                f"{self.holder.agent_id} ({task}until {self.holder.expires_at})")
        more = f" and {len(self.files) - 5} more" if len(self.files) > 5 else ""
        return text + (f" [files: {', '.join(self.files[:5])}{more}]" if self.files else "")


# ---------------------------------------------------------------------------- the table


def _table(cfg: Config) -> ReservationTable:
    return stores.reservations(cfg)


def _mirror(cfg: Config, agents: Iterable[str], table: list[Reservation], now: datetime) -> None:
    """Set each agent's ``files_locked`` in agent-state.yaml to the patterns it holds."""
    from . import state_sync  # late: only writers need it

    for agent_id in sorted(set(agents)):
        held = list(dict.fromkeys(p for r in table if r.agent_id == agent_id and not r.free_reason(now)
                                  for p in r.patterns))
        state = state_sync.get_agent_state(agent_id, root=cfg.root)
        if not held and state is None:
            continue  # nothing to narrow: do not create an entry for an agent that holds nothing
        if state is not None and (state.get("context") or {}).get("files_locked") == held:
            continue  # shown already: a round retried after another writer's change writes nothing again
        state_sync.set_files_locked(agent_id, held, root=cfg.root, now=now)


class _RepoFiles:
    """Existing files under the root that a pattern matches, by (device, inode); cached per call."""

    def __init__(self, cfg: Config) -> None:
        self.root, self.skip = str(cfg.root), str(cfg.runtime_dir)
        self.cache: dict[str, dict[tuple[int, int], str]] = {}

    def common(self, first: str, second: str) -> tuple[str, ...]:
        """The files both patterns match, under either spelling."""
        for pattern in (first, second):
            if pattern not in self.cache:
                self.cache[pattern] = self._scan(pattern)
        a, b = self.cache[first], self.cache[second]
        both = a.keys() & b.keys()
        return tuple(sorted({a[k] for k in both} | {b[k] for k in both}))

    def _scan(self, pattern: str) -> dict[tuple[int, int], str]:
        glob, parts, found = compile_pattern(pattern), pattern.split("/"), {}
        fixed: list[str] = []  # leading literal components: the walk starts below them
        for part in parts if glob.literal else parts[:-1]:
            if not compile_pattern(part).literal:
                break
            fixed.append(part)
        top = os.path.join(self.root, *fixed)
        try:
            info = os.stat(top)
        except OSError:
            return found
        if stat.S_ISREG(info.st_mode):
            if glob.regex.fullmatch("/".join(fixed)):
                found[(info.st_dev, info.st_ino)] = "/".join(fixed)
            return found
        below = len(parts) - len(fixed)  # without **, a match lies exactly this deep under top
        for dirpath, dirnames, filenames in os.walk(top):
            rel = os.path.relpath(dirpath, top)
            prefix = fixed + ([] if rel == "." else rel.split(os.sep))
            dirnames[:] = [d for d in dirnames if d != ".git" and os.path.join(dirpath, d) != self.skip
                           and (glob.deep or len(prefix) - len(fixed) + 1 < below)]
            for name in filenames:
                relpath = "/".join(prefix + [name])
                if glob.regex.fullmatch(relpath):
                    try:
                        info = os.stat(os.path.join(dirpath, name))
                    except OSError:
                        continue
                    if stat.S_ISREG(info.st_mode):
                        found.setdefault((info.st_dev, info.st_ino), relpath)
        return found


def _clash(mine: str, theirs: str, repo: _RepoFiles) -> Optional[tuple[str, ...]]:
    """The existing files both patterns cover (maybe none) when they overlap; None when not."""
    files = repo.common(mine, theirs)
    return files if files or patterns_overlap(mine, theirs) else None


# ---------------------------------------------------------------------------- the API


def _moment(now: Optional[datetime], table: ReservationTable) -> datetime:
    """``now`` when given, else the table's clock (the Redis server's, on a shared table)."""
    return table.now() if now is None else parse_ts(now)


def _ttl(value: Any, cfg: Config) -> float:
    where = None
    if value is None:
        where = cfg.root / "swarm.yaml"
        value = cfg.get("reservations", "ttl_seconds")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValidationError(f"ttl must be a positive number of seconds, got {value!r:.40}", path=where)
    return float(value)


def reserve(agent_id: str, patterns: Iterable[str], exclusive: bool = True,
            ttl: Optional[float] = None, task_id: Optional[str] = None,
            *, root: Optional[PathLike] = None, now: Optional[datetime] = None,
            pid: Optional[int] = None, host: Optional[str] = None,
            proc_start: Optional[int] = None, track_process: bool = True) -> Reservation:
    """Reserve ``patterns`` for ``agent_id`` for ``ttl`` seconds (default ``reservations.ttl_seconds``).

    The holder process defaults to this one (pass another's pid/host/proc_start, or
    ``track_process=False`` to rely on the TTL alone). An agent never clashes with itself.
    Raises ReservationConflict, naming the holders and overlaps, when another live agent holds
    an overlapping pattern and either side is exclusive.
    """
    cfg = load_config(root=root)
    agent_id = validate_id(agent_id, "agent id")
    if task_id is not None:
        validate_id(task_id, "task id")
    if isinstance(patterns, str):
        patterns = [patterns]
    wanted = list(dict.fromkeys(map(normalize_pattern, patterns)))
    if not wanted:
        raise ValidationError("nothing to reserve: no patterns given")
    store = _table(cfg)
    now, ttl = _moment(now, store), _ttl(ttl, cfg)
    if pid is None and host is None and track_process:
        ident = my_identity()
        pid, host, proc_start = ident["pid"], ident["host"], ident["proc_start"]
    elif pid is not None:
        host = host or HOSTNAME
        proc_start = process_start_time(pid) if proc_start is None and host == HOSTNAME else proc_start
    new = Reservation(id=os.urandom(6).hex(), agent_id=agent_id, patterns=tuple(wanted),
                      acquired_at=format_ts(now), expires_at=format_ts(in_seconds(ttl, now)),
                      exclusive=bool(exclusive), task_id=task_id, pid=pid, host=host,
                      proc_start=proc_start)
    repo = _RepoFiles(cfg)  # the identity check is this host's: it looks at this checkout's files
    pruned: set[str] = set()
    widened: list[bool] = []

    def change(table: list[Reservation]) -> list[Reservation]:
        live = [r for r in table if not r.free_reason(now)]
        pruned.clear()
        pruned.update({r.agent_id for r in table if r.free_reason(now)} - {agent_id})
        overlaps = [Overlap(other, mine, theirs, files)
                    for other in live if other.agent_id != agent_id and (exclusive or other.exclusive)
                    for mine in new.patterns for theirs in other.patterns
                    for files in [_clash(mine, theirs, repo)] if files is not None]
        if overlaps:
            raise ReservationConflict(agent_id, overlaps, store.where())
        table = live + [new]
        # Widen first: the mirror never shows less than is held (a retried round widens again).
        widened.append(True)
        _mirror(cfg, [agent_id], table, now)
        return table

    try:
        # expired and dead records went with this write
        store.update(change, after=lambda table: _mirror(cfg, pruned, table, now))
    except SwarmError:
        if widened:  # a round that lost to another writer widened the mirror: show what is held
            try:
                _mirror(cfg, [agent_id], store.read(), now)
            except SwarmError as exc:  # the error that stopped the reservation is the one to raise
                log.warning("could not narrow files_locked of %s back: %s", agent_id, exc)
        raise
    return new


def _remove(root: Optional[PathLike], now: Optional[datetime],
            pick: Callable[[Reservation, datetime], Optional[str]]) -> list[tuple[Reservation, str]]:
    """Drop every reservation ``pick`` gives a reason for; the mirror is narrowed after."""
    cfg = load_config(root=root)
    store = _table(cfg)
    moment = _moment(now, store)
    gone: list[tuple[Reservation, str]] = []

    def change(table: list[Reservation]) -> Optional[list[Reservation]]:
        gone[:] = [(r, why) for r in table for why in [pick(r, moment)] if why]
        return [r for r in table if not any(r.id == g.id for g, _ in gone)] if gone else None

    store.update(change, after=lambda table: _mirror(cfg, {r.agent_id for r, _ in gone}, table, moment))
    return gone


def release(target: Union[Reservation, str], task_id: Optional[str] = None, *,
            root: Optional[PathLike] = None, now: Optional[datetime] = None) -> list[Reservation]:
    """Release one reservation, or every one agent ``target`` holds for ``task_id``.

    Returns what was released ([] when already gone). ``release_all`` releases all an agent holds.
    """
    if isinstance(target, Reservation):
        if task_id is not None:
            raise ValidationError("give a reservation, or an agent id and a task id, not both")
        return [r for r, _ in _remove(root, now, lambda r, _: "released" if r.id == target.id else None)]
    if task_id is None:
        raise ValidationError("release(agent_id, task_id) needs a task id",
                              hint="use release_all(agent_id) to release everything it holds")
    return release_all(target, validate_id(task_id, "task id"), root=root, now=now)


def release_all(agent_id: str, task_id: Optional[str] = None, *, root: Optional[PathLike] = None,
                now: Optional[datetime] = None) -> list[Reservation]:
    """Release everything ``agent_id`` holds (only for ``task_id`` when given)."""
    agent_id = validate_id(agent_id, "agent id")
    if task_id is not None:
        validate_id(task_id, "task id")
    return [r for r, _ in _remove(root, now, lambda r, _: "released" if (
        r.agent_id == agent_id and task_id in (None, r.task_id)) else None)]


def release_for_task(task_id: str, *, root: Optional[PathLike] = None,
                     now: Optional[datetime] = None) -> list[Reservation]:
    """Release every reservation made for ``task_id``, whoever holds it: the task has ended."""
    task_id = validate_id(task_id, "task id")
    return [r for r, _ in _remove(root, now, lambda r, _: "task ended" if r.task_id == task_id else None)]


def reap(now: Optional[datetime] = None, *,
         root: Optional[PathLike] = None) -> list[tuple[Reservation, str]]:
    """Remove every expired reservation and every one whose holder died; returns them with why."""
    return _remove(root, now, lambda r, moment: r.free_reason(moment))


def renew(reservation: Reservation, ttl: Optional[float] = None, *, root: Optional[PathLike] = None,
          now: Optional[datetime] = None) -> Reservation:
    """Extend a live reservation to ``ttl`` seconds from now.

    LeaseLost when it was released or reaped, has expired or its holder died: others may hold
    its paths by now, so reserve them again instead.
    """
    cfg = load_config(root=root)
    store = _table(cfg)
    now, ttl = _moment(now, store), _ttl(ttl, cfg)
    renewed: list[Reservation] = []

    def change(table: list[Reservation]) -> list[Reservation]:
        stored = next((r for r in table if r.id == reservation.id), None)
        why = "it was released or reaped" if stored is None else stored.free_reason(now)
        if why or stored is None:
            raise LeaseLost(f"cannot renew reservation {reservation.id} of {reservation.agent_id}: "
                            f"{why}", path=store.where(), holder=reservation.agent_id,
                            hint="reserve the paths again")
        renewed[:] = [replace(stored, expires_at=format_ts(in_seconds(ttl, now)))]
        return [renewed[0] if r.id == stored.id else r for r in table]

    store.update(change)
    return renewed[0]


def list_reservations(*, root: Optional[PathLike] = None, now: Optional[datetime] = None,
                      include_expired: bool = False) -> list[Reservation]:
    """Reservations in the order they were made; without ``include_expired`` only live ones."""
    store = _table(load_config(root=root))
    moment, table = _moment(now, store), store.read()
    return table if include_expired else [r for r in table if not r.free_reason(moment)]


def _holders(table: list[Reservation], path: str, now: datetime, exclude_agent: Optional[str],
             repo: _RepoFiles) -> list[Reservation]:
    wanted = normalize_pattern(path)
    return [r for r in table if r.agent_id != exclude_agent and not r.free_reason(now)
            and any(_clash(wanted, p, repo) is not None for p in r.patterns)]


def find_holders(path: str, *, root: Optional[PathLike] = None, now: Optional[datetime] = None,
                 exclude_agent: Optional[str] = None) -> list[Reservation]:
    """The live reservations that cover ``path`` (a path or a pattern), oldest first."""
    cfg = load_config(root=root)
    if exclude_agent is not None:
        validate_id(exclude_agent, "agent id")
    store = _table(cfg)
    return _holders(store.read(), path, _moment(now, store), exclude_agent, _RepoFiles(cfg))


# ---------------------------------------------------------------------------- git hook


def _git(args: list[str], cwd: Optional[PathLike] = None) -> str:
    from .worktrees import git  # the one git runner; late: most commands here never need git

    return git(cwd or os.getcwd(), *args, hint="run this inside a git repository").stdout


def check_commit(agent_id: Optional[str] = None, *, root: Optional[PathLike] = None,
                 now: Optional[datetime] = None,
                 cwd: Optional[PathLike] = None) -> list[tuple[str, Reservation]]:
    """(file, holder) for each staged file (in ``cwd``) another live agent reserved exclusively.

    Both sides of a rename count. Empty means the commit may go ahead.
    """
    cfg = load_config(root=root)
    agent_id = validate_id(agent_id, "agent id") if agent_id else None
    staged = _git(["diff", "--cached", "--name-only", "--no-renames", "-z"], cwd).split("\0")
    store = _table(cfg)
    table, moment, repo = store.read(), _moment(now, store), _RepoFiles(cfg)
    return [(path, r) for path in staged if path
            for r in _holders(table, escape(path), moment, agent_id, repo) if r.exclusive]


_HOOK_MARK = "# installed by swarmfile: reservations.py install-hook"
_HOOK = """#!/bin/sh
{mark}
# Refuses a commit touching files another live agent reserved exclusively; $SWARM_AGENT_ID is you.
exec {command} check-commit --root {root} --agent "${{SWARM_AGENT_ID:-}}"
"""


def install_hook(*, root: Optional[PathLike] = None, force: bool = False) -> tuple[Path, str]:
    """Install the pre-commit hook of the repo at ``root``; returns (hook, what was done).

    What was done: ``installed``, ``unchanged`` or ``replaced``. A different hook that is not
    ours is replaced only with ``force`` and kept as ``pre-commit.swarm-backup``; without
    ``force`` ValidationError.
    """
    import shlex

    cfg = load_config(root=root)
    hooks = Path(_git(["rev-parse", "--git-path", "hooks"], cfg.root).strip())
    hook = (hooks if hooks.is_absolute() else cfg.root / hooks) / "pre-commit"
    script = _HOOK.format(mark=_HOOK_MARK, command=shlex.join(module_argv("reservations")),
                          root=shlex.quote(str(cfg.root)))
    action = "installed"
    if hook.exists():
        old = hook.read_bytes()
        if old == script.encode():
            return hook, "unchanged"
        if _HOOK_MARK.encode() not in old:
            if not force:
                raise ValidationError("a different pre-commit hook is already installed", path=hook,
                                      hint="rerun with --force to replace it; the old one is kept")
            atomic_write(hook.with_name("pre-commit.swarm-backup"), old)
        action = "replaced"
    atomic_write(hook, script)
    os.chmod(hook, 0o755)
    return hook, action


# ---------------------------------------------------------------------------- CLI


def _rows(found: list[Reservation], now: datetime, paths: Optional[list[str]] = None) -> str:
    from .cli import table

    head = ["ID", "AGENT", "MODE", "TASK", "EXPIRES", "STATE", "PATTERNS"]
    return table((["PATH"] if paths else []) + head,
                 [([paths[n]] if paths else []) + [r.id, r.agent_id, r.mode, r.task_id or "-", r.expires_at,
                                                    r.free_reason(now) or "live", ", ".join(r.patterns)]
                  for n, r in enumerate(found)])


def _doc(r: Reservation, now: datetime) -> dict[str, Any]:
    return {**r.to_dict(), "free_reason": r.free_reason(now)}


def _cli(args: Any, now: datetime) -> tuple[Any, str, int]:
    """Run one command: (JSON document, human text, exit code)."""
    root = args.root
    if args.command == "list":
        found = list_reservations(root=root, now=now, include_expired=args.all)
        return [_doc(r, now) for r in found], _rows(found, now) if found else "no reservations", 0
    if args.command == "reserve":
        try:
            made = reserve(args.agent, args.patterns, exclusive=not args.shared, ttl=args.ttl,
                           task_id=args.task, root=root, now=now, pid=args.pid,
                           track_process=args.pid is not None)
        except ReservationConflict as exc:
            overlaps = [{"pattern": o.pattern, "held": o.held, "files": list(o.files),
                         "holder": _doc(o.holder, now)} for o in exc.overlaps]
            document = {"conflict": str(exc), "holders": exc.holders, "overlaps": overlaps}
            return document, f"error: {exc}", 1
        return _doc(made, now), _rows([made], now), 0
    if args.command == "release":
        gone = (release(args.agent, args.task, root=root) if args.task
                else release_all(args.agent, root=root))
        return [r.to_dict() for r in gone], f"released {len(gone)} reservation(s)" + "".join(
            f"\n  {r.id}: {', '.join(r.patterns)}" for r in gone), 0
    if args.command == "check":
        held = [(p, r) for p in args.paths for r in find_holders(p, root=root, now=now, exclude_agent=args.agent or None)]
        document = {p: [_doc(r, now) for q, r in held if q == p] for p in args.paths}
        if not held:
            return document, "no holders: " + ", ".join(args.paths), 0
        return document, _rows([r for _, r in held], now, [p for p, _ in held]), 1
    if args.command == "check-commit":
        agent = args.agent if args.agent is not None else os.environ.get("SWARM_AGENT_ID", "")
        refused = check_commit(agent or None, root=root, now=now)
        parts = [f"{f} is reserved exclusively by {r.agent_id}"
                 + (f" (task {r.task_id})" if r.task_id else "") for f, r in refused]
        text = (f"error: commit refused: {'; '.join(parts)} (wait for the holder to release it, "
                "or commit as the holder with SWARM_AGENT_ID)") if refused else \
            "commit ok: nothing staged is reserved"
        return [{"file": f, "holder": _doc(r, now)} for f, r in refused], text, 1 if refused else 0
    if args.command == "install-hook":
        hook, action = install_hook(root=root, force=args.force)
        return {"hook": str(hook), "action": action}, f"{action} {hook}", 0
    reaped = reap(now, root=root)
    text = f"reaped {len(reaped)} reservation(s)" + "".join(
        f"\n  {r.id} {r.agent_id}: {why}" for r, why in reaped)
    return [{**r.to_dict(), "reason": why} for r, why in reaped], text, 0


def main(argv: Optional[list[str]] = None) -> int:
    """``python lib/reservations.py [--root DIR] [--json] COMMAND ...``."""
    import sys

    from .cli import parser, positive_int, positive_seconds, print_json, run

    # The git hook runs in any repository: with no workspace there is nothing reserved to refuse.
    top = parser("reservations.py",
                 "Reserve files so agents editing one repository do not overwrite each other.",
                 needs_workspace=lambda args: args.command not in ("check-commit", "install-hook"))
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> Any:
        return sub.add_parser(name, help=text)

    command("list", "live reservations").add_argument(
        "--all", action="store_true", help="also expired ones and those of dead holders")
    cmd = command("reserve", "reserve PATTERNs for AGENT (exit 1 on a conflict)")
    cmd.add_argument("agent", metavar="AGENT")
    cmd.add_argument("patterns", nargs="+", metavar="PATTERN")
    cmd.add_argument("--shared", action="store_true", help="others may share it (default: exclusive)")
    cmd.add_argument("--ttl", type=positive_seconds, metavar="S",
                     help="seconds (default: reservations.ttl_seconds)")
    cmd.add_argument("--task", metavar="T", help="the task it is for (released when the task ends)")
    cmd.add_argument("--pid", type=positive_int, metavar="PID",
                     help="holder process: free once it dies (default: the TTL alone)")
    cmd = command("release", "release AGENT's reservations")
    cmd.add_argument("agent", metavar="AGENT")
    cmd.add_argument("--task", metavar="T", help="only those for this task")
    cmd = command("check", "who holds each PATH (exit 1 if anyone does)")
    cmd.add_argument("paths", nargs="+", metavar="PATH")
    cmd.add_argument("--agent", metavar="AGENT", help="ignore this agent's reservations")
    command("check-commit", "refuse staged files reserved by another agent (exit 1)").add_argument(
        "--agent", metavar="AGENT", help="the committing agent (default: $SWARM_AGENT_ID)")
    command("install-hook", "install the git pre-commit hook that runs check-commit").add_argument(
        "--force", action="store_true", help="replace a different existing hook (kept as a backup)")
    command("reap", "remove expired reservations and those of dead holders")
    args = top.parse_args(argv)

    def body() -> int:
        # The table's clock: on Redis the server's, which every host judges expiries by.
        now = utc_now() if args.command == "install-hook" else _table(load_config(root=args.root)).now()
        document, text, code = _cli(args, now)
        if args.json:
            print_json(document)
        if code and text.startswith("error: "):
            print(text, file=sys.stderr)
        elif not args.json:
            print(text)
        return code

    return run(body)
