"""redis_backend: the backend URL, the key namespace, and a password that is never shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarmfile import config
from swarmfile.errors import BackendUnavailable, SwarmError, ValidationError
from swarmfile.redis_backend import PASSWORD_ENV, RedisURL, is_redis_url, namespace, parse_url, redact
from swarmfile.stores import lease_table

LIB = Path(__file__).resolve().parent.parent / "lib"
SECRET = "s3cr3t-Pa55"
YAML = Path("/ws/swarm.yaml")


def test_urls_of_every_scheme_parse():
    url = parse_url(f"redis://alice:{SECRET}@cache.internal:6380/3", config_file=YAML)
    assert (url.scheme, url.host, url.port, url.db, url.username, url.password) == (
        "redis", "cache.internal", 6380, 3, "alice", SECRET)
    assert parse_url("redis://localhost", config_file=YAML).port == 6379
    tls = parse_url("rediss://:pw@redis.example:6390/0?ssl_ca_certs=/etc/ca.pem", config_file=YAML)
    assert tls.client_options()["ssl"] is True and tls.client_options()["ssl_ca_certs"] == "/etc/ca.pem"
    sock = parse_url("unix:///run/redis/redis.sock?db=2", config_file=YAML)
    assert (sock.path, sock.db, sock.host) == ("/run/redis/redis.sock", 2, None)
    assert sock.client_options()["unix_socket_path"] == "/run/redis/redis.sock"
    assert is_redis_url("rediss://x") and not is_redis_url("files") and not is_redis_url(None)


def test_the_password_may_come_from_the_environment_instead_of_swarm_yaml(monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    assert parse_url("redis://alice@h:1/0", config_file=YAML).password == SECRET
    assert parse_url("redis://alice:given@h:1/0", config_file=YAML).password == "given"  # the URL wins


def test_the_password_is_never_in_repr_or_str():
    url = parse_url(f"redis://alice:{SECRET}@h:1/0", config_file=YAML)
    for shown in (repr(url), str(url), f"{url}", repr([url]), str(url.client_options().keys())):
        assert SECRET not in shown
    assert str(url) == "redis://alice:***@h:1/0"
    assert redact(f"connect redis://u:{SECRET}@h:1 failed") == "connect redis://u:***@h:1 failed"
    assert redact(f"x {SECRET} y", SECRET) == "x *** y"


@pytest.mark.parametrize("text, why", [
    ("redis://", "no host"),
    (f"redis://u:{SECRET}@h:notaport/0", "port"),
    (f"redis://u:{SECRET}@h:1/zero", "database"),
    ("unix://", "no socket path"),
    (f"memcached://u:{SECRET}@h", "scheme"),
])
def test_a_bad_url_is_one_error_naming_swarm_yaml_without_the_password(text, why):
    with pytest.raises(ValidationError) as info:
        parse_url(text, config_file=YAML)
    message = str(info.value)
    assert message.startswith("/ws/swarm.yaml: ") and why in message and SECRET not in message


def test_a_bad_url_on_the_command_line_exits_2_naming_swarm_yaml(workspace):
    (workspace / "swarm.yaml").write_text(f"backend: redis://u:{SECRET}@h:notaport/0\n")
    proc = subprocess.run([sys.executable, str(LIB / "swarm.py"), "status"], capture_output=True, text=True,
                          env=dict(os.environ, SWARM_ROOT=str(workspace)), timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "swarm.yaml" in lines[0], lines
    assert SECRET not in proc.stderr + proc.stdout


def test_an_unreachable_server_is_one_error_without_the_password(workspace, redis_server, tmp_path):
    port = redis_server.port
    redis_server.stop()
    (workspace / "swarm.yaml").write_text(f"backend: redis://u:{SECRET}@127.0.0.1:{port}/0\n")
    config._cache.clear()
    with pytest.raises(BackendUnavailable) as info:
        lease_table(config.load_config(root=workspace)).read("T-1")
    assert "cannot reach Redis at redis://u:***@127.0.0.1" in str(info.value) and SECRET not in str(info.value)
    proc = subprocess.run([sys.executable, str(LIB / "swarm.py"), "status"], capture_output=True, text=True,
                          env=dict(os.environ, SWARM_ROOT=str(workspace)), timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert SECRET not in proc.stderr + proc.stdout + (workspace / "events.yaml").read_text()


def test_a_wrong_password_is_refused_without_showing_either_password(workspace, tmp_path):
    from redis_server import RedisServer, require_redis

    require_redis()
    with RedisServer(tmp_path / "auth", password="the-right-one") as server:
        (workspace / "swarm.yaml").write_text(f"backend: redis://default:{SECRET}@127.0.0.1:{server.port}/0\n")
        config._cache.clear()
        with pytest.raises(SwarmError) as info:
            lease_table(config.load_config(root=workspace)).read("T-1")
        assert SECRET not in str(info.value) and "the-right-one" not in str(info.value)
        assert "credentials" in str(info.value) or "refused" in str(info.value)
        (workspace / "swarm.yaml").write_text(f"backend: {server.url}\n")  # the right password works
        config._cache.clear()
        assert lease_table(config.load_config(root=workspace)).read("T-1") is None


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)


def test_the_namespace_is_shared_by_clones_of_one_repository(tmp_path):
    made = []
    for name, remote in (("laptop-clone", "https://ci-token@github.com/acme/app.git"),
                         ("server-checkout", "git@github.com:acme/app.git")):
        root = tmp_path / name
        root.mkdir()
        _git(root, "init", "-q")
        _git(root, "remote", "add", "origin", remote)
        made.append(namespace(config.Config(root, {**config.DEFAULTS})))
    assert made == ["github.com/acme/app", "github.com/acme/app"]  # no credentials, no .git


def test_an_explicit_namespace_wins_and_a_bad_one_names_swarm_yaml(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    assert namespace(config.Config(root, {**config.DEFAULTS})) == "ws"  # no git remote: the folder's name
    assert namespace(config.Config(root, {**config.DEFAULTS, "namespace": "team/app"})) == "team/app"
    with pytest.raises(ValidationError) as info:
        namespace(config.Config(root, {**config.DEFAULTS, "namespace": "a b{c}"}))
    assert "swarm.yaml" in str(info.value)


def test_two_namespaces_on_one_server_do_not_see_each_others_leases(tmp_path, redis_server, monkeypatch):
    from swarmfile.lease_store import Lease

    tables = []
    for name in ("one", "two"):
        root = tmp_path / name
        root.mkdir()
        (root / "swarm.yaml").write_text(f"backend: {redis_server.url}\nnamespace: {name}\n")
        config._cache.clear()
        tables.append(lease_table(config.load_config(root=root)))
    with tables[0].lock("T-1"):
        tables[0].write(Lease("T-1", "e", 1, "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"))
    assert tables[0].read("T-1") is not None and tables[1].read("T-1") is None
    assert repr(tables[0]) == f"RedisLeaseTable('{RedisURL('redis', '127.0.0.1', redis_server.port)}', namespace='one')"


def test_stores_names_the_same_redis_schemes_as_the_backend():
    """stores lists the schemes itself so that it loads no client code; the two lists must agree."""
    from swarmfile import redis_backend, stores

    assert set(stores._REDIS_SCHEMES) == set(redis_backend.SCHEMES)
    assert all(stores.BACKENDS[scheme].lease_table is stores.redis_lease_table for scheme in redis_backend.SCHEMES)
