"""The test redis-server itself: it comes up, survives SIGKILL with its data, pauses, cleans up."""

from __future__ import annotations

import os

import pytest

from redis_server import REQUIRE_ENV, RedisServer, missing_reason, require_redis


def test_a_killed_server_restarts_on_its_port_with_every_acknowledged_write(redis_server):
    client = redis_server.client()
    for n in range(50):
        client.incr("counter")
    client.close()
    port = redis_server.port
    redis_server.kill()
    redis_server.restart()
    assert redis_server.port == port
    client = redis_server.client()
    assert int(client.get("counter")) == 50  # appendfsync always: nothing acknowledged is lost
    client.close()


def test_a_paused_server_answers_nothing_until_resumed(redis_server):
    import redis

    redis_server.pause()
    client = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=0.3, socket_connect_timeout=0.3)
    with pytest.raises(redis.exceptions.TimeoutError):
        client.ping()
    redis_server.resume()
    assert client.ping()
    client.close()


def test_a_unix_socket_server_and_its_cleanup(tmp_path):
    require_redis()
    directory = tmp_path / "r"
    with RedisServer(directory, unix_socket=True) as server:
        assert server.url.startswith("unix://")
        pid = server.proc.pid
        server.ping()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_without_redis_tests_skip_unless_required(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "redis-server is not installed" in missing_reason()
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_redis()
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception):
        require_redis()
