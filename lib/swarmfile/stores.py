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
from .lease_store import FileLeaseTable, LeaseTable
from .redis_backend import is_redis_url, redact
from .redis_lease import RedisLeaseTable

__all__ = ["lease_table", "BACKENDS"]

# swarm.yaml ``backend:`` value -> the lease table that implements it
BACKENDS = {
    "files": FileLeaseTable,  # a YAML file per lease under .swarm/claims/ (the default)
    "journal": JournalLeaseTable,  # files, with leases in one append-only journal: one fsync per change
    "redis": RedisLeaseTable,  # any redis://, rediss:// or unix:// URL: shared by every host (redis_lease)
}

_tables: dict[tuple, LeaseTable] = {}
_made = threading.Lock()


def lease_table(cfg: Config) -> LeaseTable:
    """The lease table of ``cfg``'s workspace, as ``swarm.yaml`` ``backend:`` says (default ``files``)."""
    backend = cfg.settings.get("backend", "files") or "files"
    key = (cfg.root, cfg.runtime_dir, backend if isinstance(backend, str) else repr(backend),
           repr(cfg.settings.get("namespace")))
    table = _tables.get(key)
    if table is not None:
        return table
    try:
        kind = BACKENDS["redis" if is_redis_url(backend) else backend]
    except (KeyError, TypeError):
        raise ValidationError(f"unknown backend {redact(str(backend))!r}", path=cfg.root / "swarm.yaml",
                              hint="use files, journal or a Redis URL (redis://host:6379/0, rediss://..., "
                                   "unix:///path/to/socket)") from None
    with _made:
        return _tables.setdefault(key, kind(cfg))
