"""The benchmark runner works end to end: one cheap row, a printed table, valid JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent / "benchmarks" / "run.py"


@pytest.mark.timeout(15)
def test_quick_discovery_row_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--only", "discovery", "--max-size", "10", "--repeats", "3",
         "--json-out", str(out)],
        capture_output=True, text=True, timeout=14, cwd=tmp_path, env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Swarmfile benchmarks (quick):") and "CPUs" in lines[0]
    header = next(line for line in lines if line.startswith("row "))
    for column in ("swarm p50", "swarm p95", "baseline", "ratio", "target", "result"):
        assert column in header
    row = next(line for line in lines if line.startswith("discover_agents, 10 agents"))
    assert "bare libyaml parse" in row and ("PASS" in row or "MISS" in row)

    document = json.loads(out.read_text())
    assert document["quick"] is True and document["groups"] == ["discovery"]
    assert document["machine"]["cpu_count"] >= 1 and document["machine"]["python"]
    [entry] = document["rows"]
    assert entry["id"] == "discovery.10" and entry["result"] in ("PASS", "MISS")
    for side in ("swarm", "baseline"):
        assert entry[side]["n"] == 3 and len(entry[side]["samples"]) == 3
        assert 0 < entry[side]["median"] <= entry[side]["p95"]
    assert entry["ratio"] == pytest.approx(entry["swarm"]["median"] / entry["baseline"]["median"])
    assert not list(scratch.iterdir())  # the workspaces were made in TMPDIR and removed


def test_unknown_group_is_refused(tmp_path):
    done = subprocess.run([sys.executable, str(RUN), "--only", "nosuch", "--json-out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=14)
    assert done.returncode == 2 and "unknown group" in done.stderr
    assert not (tmp_path / "x.json").exists()
