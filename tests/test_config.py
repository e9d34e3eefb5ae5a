"""config: root resolution, swarm.yaml overrides, timestamps, ids."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from swarmfile import config
from swarmfile.errors import InvalidIdError, ParseError, ValidationError


def test_root_resolution_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWARM_ROOT", raising=False)
    assert config.resolve_root() == tmp_path
    monkeypatch.setenv("SWARM_ROOT", str(tmp_path / "env"))
    assert config.resolve_root() == tmp_path / "env"
    assert config.resolve_root(root=tmp_path / "flag") == tmp_path / "flag"


def test_defaults_and_overrides(tmp_path):
    cfg = config.load_config(root=tmp_path)
    assert cfg.heartbeat_file == tmp_path / "heartbeat.yaml"
    assert cfg.lock_dir == tmp_path / ".swarm" / "locks"
    (tmp_path / "swarm.yaml").write_text(
        "paths:\n  heartbeat: .autonomous/communications/heartbeat.yaml\n"
        "timeouts:\n  heartbeat_seconds: 60\n"
    )
    cfg = config.load_config(root=tmp_path)
    assert cfg.heartbeat_file == tmp_path / ".autonomous/communications/heartbeat.yaml"
    assert cfg.heartbeat_timeout == 60
    assert cfg.events_file == tmp_path / "events.yaml", "keys not overridden keep their defaults"
    assert config.DEFAULTS["timeouts"]["heartbeat_seconds"] == 120, "defaults are not mutated"


@pytest.mark.parametrize(
    "content, error",
    [("paths: [1, 2]\n", ValidationError), ("- a\n", ValidationError), ("paths: {a: [\n", ParseError)],
)
def test_bad_swarm_yaml_is_named(tmp_path, content, error):
    (tmp_path / "swarm.yaml").write_text(content)
    with pytest.raises(error) as info:
        config.load_config(root=tmp_path)
    assert "swarm.yaml" in str(info.value)


@pytest.mark.parametrize(
    "text",
    ["2026-02-01T13:37:14Z", "2026-02-01T20:37:14+07:00", "2026-02-01T20:37:14+0700",
     "2026-02-01T13:37:14", "2026-02-01 13:37:14Z", "2026-02-01T13:37:14.000000+00:00"],
)
def test_parse_ts_accepts_ralf_styles(text):
    assert config.parse_ts(text) == datetime(2026, 2, 1, 13, 37, 14, tzinfo=timezone.utc)


def test_parse_ts_accepts_yaml_datetimes_and_rejects_garbage():
    assert config.parse_ts(datetime(2026, 2, 1, 13, 37, 14)).tzinfo == timezone.utc
    for bad in ["yesterday", "", None, [1]]:
        with pytest.raises(ValueError):
            config.parse_ts(bad)


def test_format_ts_is_utc_z_with_millis():
    moment = datetime(2026, 11, 22, 17, 0, 0, 123456, tzinfo=timezone.utc)
    assert config.format_ts(moment) == "2026-11-22T17:00:00.123Z"
    assert config.parse_ts(config.format_ts(moment)) == moment.replace(microsecond=123000)


@pytest.mark.parametrize("bad", ["../../etc", "a/b", "a\x00b", "", ".hidden", "-x", "a" * 129, 5, None, "a b"])
def test_invalid_ids_rejected(bad):
    with pytest.raises(InvalidIdError, match="invalid task id"):
        config.validate_id(bad, "task id")


@pytest.mark.parametrize("good", ["executor-1", "TASK-1769952151-SUB1", "RALF-2026-01-30-001", "a.b_c"])
def test_valid_ids_pass(good):
    assert config.validate_id(good) == good
