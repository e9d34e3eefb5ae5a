"""A workspace's own files: creating them (``swarm.py init``) and adding a task to it.

Below the operator CLI and the drivers: ``swarm.py init`` and ``new-task``, the demo, and the
MCP server's ``add_task`` all come here, so none of them imports another.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Sequence

from . import duplicate_detector, events, stores, task_graph, task_store
from .config import load_config
from .errors import ValidationError
from .fileio import atomic_write

__all__ = ["init_workspace", "new_task"]

_GITIGNORE_LINE = ".swarm/"


def init_workspace(*, root: Optional[str] = None) -> list[Path]:
    """Create the workspace files that are missing (never overwrites); returns what it created."""
    cfg = load_config(root=root)
    created: list[Path] = []
    for directory in (cfg.tasks_active, cfg.tasks_completed, cfg.runtime_dir):
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            created.append(directory)
    for store in (stores.agent_registry(cfg), stores.event_log(cfg)):  # each starts itself, empty
        where = store.create()
        if where is not None:
            created.append(Path(where))
    gitignore = cfg.root / ".gitignore"
    if (cfg.root / ".git").exists():
        lines = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
        if _GITIGNORE_LINE not in lines and ".swarm" not in lines:
            atomic_write(gitignore, "\n".join(lines + [_GITIGNORE_LINE]) + "\n")
            created.append(gitignore)
    return created


def new_task(title: str, *, root: Optional[str] = None, priority: str = "medium",
             depends_on: Sequence[str] = (), objective: str = "", criteria: Sequence[str] = (),
             files: Sequence[str] = (), task_id: Optional[str] = None, force: bool = False,
             agent: str = "operator") -> Path:
    """Write a task file from the template; refuses a near-duplicate unless ``force``."""
    cfg = load_config(root=root)
    if not title.strip():
        raise ValidationError("a task needs a title")
    if not force:
        duplicate_detector.check_new_task(title, objective, root=cfg.root)
    if task_id is None:
        task_id = _fresh_id(cfg)
    open_tasks = [t for t in task_store.indexed_listing(cfg, errors=[]) if not task_store.is_finished(t, cfg)]
    loop = task_graph.cycle_through(task_id, list(depends_on), open_tasks)
    if loop is not None:
        raise ValidationError(f"task {task_id} would close a dependency cycle: {' -> '.join(loop)}", task_id=task_id,
                              hint="drop that --depends-on: the tasks would wait for each other forever")
    path = task_store.new_task_file(task_id, title, root=cfg.root, priority=priority, depends_on=list(depends_on),
                               objective=objective, criteria=list(criteria), files=list(files))
    events.append_event("created", agent, task_id, root=cfg.root, title=title, priority=priority)
    return path


def _fresh_id(cfg: Any) -> str:
    """``TASK-<unix seconds>``, the RALF convention, bumped past any id already taken."""
    taken = {t.task_id for t in task_store.indexed_listing(cfg, errors=[])}
    stamp = int(time.time())
    while f"TASK-{stamp}" in taken:
        stamp += 1
    return f"TASK-{stamp}"
