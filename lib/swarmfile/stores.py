"""Which implementation of each store a workspace uses: swarm.yaml ``backend:``.

The one place that knows every implementation; everything else asks here for the store of its
workspace and talks only to the interface. One instance per workspace and process, so a store
that keeps an index in memory (the lease journal) keeps it between calls.
"""

from __future__ import annotations

import threading

from .config import Config
from .errors import ValidationError
from .lease_journal import JournalLeaseTable
from .lease_store import LeaseTable

__all__ = ["lease_table", "BACKENDS"]

# swarm.yaml ``backend:`` value -> the lease table that implements it. lease_store's
# FileLeaseTable (a YAML file per lease in .swarm/claims/) is no longer one: the journal reads
# those files once, on first use, and a table that still wrote them would fork the truth.
BACKENDS = {
    "files": JournalLeaseTable,  # the default: leases in one append-only journal, one fsync per change
    "journal": JournalLeaseTable,  # the same (the name the journal had before it became the default)
}

_tables: dict[tuple, LeaseTable] = {}
_made = threading.Lock()


def lease_table(cfg: Config) -> LeaseTable:
    """The lease table of ``cfg``'s workspace, as ``swarm.yaml`` ``backend:`` says (default ``files``)."""
    backend = cfg.settings.get("backend", "files") or "files"
    try:
        kind = BACKENDS[backend]
    except (KeyError, TypeError):
        raise ValidationError(f"unknown backend {backend!r}", path=cfg.root / "swarm.yaml",
                              hint=f"use one of: {', '.join(sorted(BACKENDS))}") from None
    key = (cfg.root, cfg.runtime_dir, kind)  # by class: two names of one table share its index
    table = _tables.get(key)
    if table is not None:
        return table
    with _made:
        return _tables.setdefault(key, kind(cfg))
