"""The Redis connection of a workspace: swarm.yaml ``backend:`` URL, key namespace, redaction.

``backend:`` takes a URL::

    redis://[[user]:password@]host[:port][/db]     plain TCP (port 6379, db 0 by default)
    rediss://...                                   TLS (``?ssl_ca_certs=PATH`` for a private CA)
    unix://[[user]:password@]/path/to/redis.sock[?db=N]

A password may be left out of the URL (swarm.yaml is usually committed) and given in the
environment as ``SWARM_REDIS_PASSWORD`` instead. The password never leaves this module in
text: ``RedisURL`` shows it as ``***`` in ``repr``/``str``, and every error raised here is
scrubbed of it.

Keys: every key of a workspace starts with ``swarm:{NAMESPACE}:`` (braces: a Redis Cluster
hash tag, so one workspace's keys share a slot and its scripts may touch several). The
namespace is ``namespace:`` in swarm.yaml when set; else the workspace's git ``origin``
remote, without scheme, credentials and ``.git`` (``github.com/acme/app``), so that clones of
one repository on several hosts meet in the same keys; else the workspace folder's name.

redis-py is imported only when a Redis backend is first used: a command line on the file
backend never loads it.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from .config import Config
from .errors import BackendUnavailable, SwarmError, ValidationError

__all__ = ["SCHEMES", "RedisURL", "RedisStore", "is_redis_url", "parse_url", "namespace", "connect", "call",
           "redact"]

SCHEMES = ("redis", "rediss", "unix")
PASSWORD_ENV = "SWARM_REDIS_PASSWORD"  # the password, when the URL in swarm.yaml leaves it out
SOCKET_SECONDS = 2.0  # one command's longest wait: a hung server must not hang a renew loop
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/@+-]{0,199}$")
_T = TypeVar("_T")


def is_redis_url(value: Any) -> bool:
    return isinstance(value, str) and value.split("://", 1)[0].lower() in SCHEMES and "://" in value


def redact(text: str, password: Optional[str] = None) -> str:
    """``text`` with the password of any URL in it, and ``password`` anywhere, replaced by ``***``."""
    text = re.sub(r"(\w+://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    if password:
        text = text.replace(password, "***")
    return text


@dataclass(frozen=True)
class RedisURL:
    """A parsed ``backend:`` URL; the password is kept out of ``repr`` and ``str``."""

    scheme: str
    host: Optional[str] = None
    port: int = 6379
    db: int = 0
    path: Optional[str] = None  # the unix socket
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    ca_certs: Optional[str] = None

    def __str__(self) -> str:
        auth = ""
        if self.username or self.password:
            auth = f"{self.username or ''}{':***' if self.password else ''}@"
        if self.scheme == "unix":
            return f"unix://{auth}{self.path}" + (f"?db={self.db}" if self.db else "")
        return f"{self.scheme}://{auth}{self.host}:{self.port}/{self.db}"

    def __repr__(self) -> str:
        return f"RedisURL({str(self)!r})"

    def client_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"db": self.db, "username": self.username, "password": self.password,
                                   "socket_timeout": SOCKET_SECONDS, "socket_connect_timeout": SOCKET_SECONDS,
                                   "health_check_interval": 0}
        if self.scheme == "unix":
            options["unix_socket_path"] = self.path
        else:
            options.update(host=self.host, port=self.port)
        if self.scheme == "rediss":
            options["ssl"] = True
            if self.ca_certs:
                options["ssl_ca_certs"] = self.ca_certs
        return options


def parse_url(text: str, *, config_file: Path) -> RedisURL:
    """The URL of ``backend:``; ValidationError naming swarm.yaml (never the password) when malformed."""
    shown = redact(str(text))

    def bad(why: str) -> ValidationError:
        return ValidationError(f"backend {shown!r} is not a Redis URL: {why}", path=config_file,
                               hint="use redis://[user:password@]host[:port][/db], rediss://... or unix:///path/to/socket")

    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as exc:
        raise bad(redact(str(exc))) from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise bad(f"unknown scheme {scheme!r}")
    query = parse_qs(parts.query)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is None:
        password = os.environ.get(PASSWORD_ENV) or None
    db_text = (query.get("db") or [""])[0]
    if scheme == "unix":
        if not parts.path or parts.path == "/":
            raise bad("no socket path")
        path: Optional[str] = unquote(parts.path)
        host = None
    else:
        path = None
        host = parts.hostname
        if not host:
            raise bad("no host")
        if parts.path not in ("", "/"):
            db_text = parts.path.lstrip("/")
    try:
        db = int(db_text) if db_text else 0
        if db < 0:
            raise ValueError
    except ValueError:
        raise bad(f"database {db_text!r} is not a number") from None
    ca = (query.get("ssl_ca_certs") or [None])[0]
    return RedisURL(scheme=scheme, host=host, port=port or 6379, db=db, path=path, username=username,
                    password=password, ca_certs=ca)


def _origin_name(root: Path) -> Optional[str]:
    from .git_repo import git  # only for a Redis backend without ``namespace:``

    try:
        proc = git(root, "config", "--get", "remote.origin.url", check=False)
    except SwarmError:
        return None
    url = proc.stdout.strip()
    if proc.returncode != 0 or not url:
        return None
    if "://" in url:
        parts = urlsplit(url)
        name = f"{parts.hostname or ''}{parts.path}"
    elif re.match(r"^[^/@:]+@[^:]+:", url) or re.match(r"^[^/:]+:", url):  # scp-like: git@host:org/app.git
        host, _, rest = url.partition(":")
        name = f"{host.rsplit('@', 1)[-1]}/{rest}"
    else:  # a local path: two hosts cannot share it, but two clones on one host can
        name = str(Path(url).resolve())
    name = name.strip("/")
    return name[:-4] if name.endswith(".git") else name


def namespace(cfg: Config) -> str:
    """The key namespace of ``cfg``'s workspace (see the module docstring)."""
    config_file = cfg.root / "swarm.yaml"
    given = cfg.settings.get("namespace")
    if given is not None:
        if not isinstance(given, str) or not _NAMESPACE.match(given):
            raise ValidationError(f"namespace {given!r} is not a valid key namespace", path=config_file,
                                  hint="use letters, digits and . _ / @ + - (up to 200), e.g. github.com/acme/app")
        return given
    found = _origin_name(cfg.root)
    if found and _NAMESPACE.match(found):
        return found
    return re.sub(r"[^A-Za-z0-9._-]", "_", cfg.root.name) or "workspace"


class _Clients:
    """One client (a thread-safe connection pool) per URL and process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_url: dict[tuple[int, RedisURL], Any] = {}


_clients = _Clients()


def connect(url: RedisURL) -> Any:
    """A redis-py client of ``url``, shared within this process (a new one after a fork)."""
    key = (os.getpid(), url)
    with _clients.lock:
        client = _clients.by_url.get(key)
        if client is None:
            try:
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry
            except ImportError:
                raise BackendUnavailable(f"swarm.yaml names the Redis backend {url}, but redis-py is not installed",
                                         hint="pip install 'redis>=8,<9'") from None
            # No retries inside redis-py: the loops above retry with their own backoff, and a
            # script re-sent after a lost reply could apply twice.
            client = redis.Redis(**url.client_options(), retry=Retry(NoBackoff(), 0))
            _clients.by_url[key] = client
    return client


def call(url: RedisURL, action: str, fn: Callable[[], _T]) -> _T:
    """Run ``fn`` (Redis commands); a connection failure becomes BackendUnavailable, scrubbed of the password."""
    import redis

    try:
        return fn()
    except redis.exceptions.AuthenticationError as exc:
        raise BackendUnavailable(f"Redis at {url} refused the credentials while trying to {action}: "
                                 f"{redact(str(exc), url.password)}",
                                 hint=f"check the user and password (URL or {PASSWORD_ENV})") from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise BackendUnavailable(f"cannot reach Redis at {url} to {action}: {redact(str(exc), url.password)}",
                                 hint="is redis-server running and reachable? the action was not done; retry") from None
    except redis.exceptions.ResponseError as exc:
        raise BackendUnavailable(f"Redis at {url} refused to {action}: {redact(str(exc), url.password)}",
                                 hint="Redis 7 or later is needed; see the README's backend section") from None


class RedisStore:
    """What every store on Redis shares: the workspace's URL, key prefix and connection."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.url: RedisURL = parse_url(cfg.settings["backend"], config_file=cfg.root / "swarm.yaml")
        self.namespace = namespace(cfg)
        self.prefix = f"swarm:{{{self.namespace}}}:"
        self._client: Any = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.url)!r}, namespace={self.namespace!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect(self.url)
        return self._client

    def _run(self, action: str, fn: Callable[[], _T]) -> _T:
        return call(self.url, action, fn)

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self.prefix}{kind}{':' + name if name else ''}"
