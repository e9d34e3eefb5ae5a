"""duplicate_detector.py: keyword Jaccard similarity against open and completed tasks, CLI exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import duplicate_detector as dd
from swarmfile import task_store
from conftest import LIB
from swarmfile.errors import DuplicateTaskError, ParseError, ValidationError

pytestmark = pytest.mark.timeout(60)

F005_TITLE = "Implement Feature F-005 Automated Documentation Generator"


@pytest.fixture(autouse=True)
def _fresh_cache():
    task_store.clear_cache()
    yield
    task_store.clear_cache()


def test_keywords_drop_stopwords_case_and_plural_s():
    assert dd.keywords("The Issues of the API docs, and THE status") == {"issue", "api", "doc", "status"}
    assert dd.keywords("Implement Feature F-005 (Automated)") == {"implement", "feature", "f-005", "automated"}
    assert dd.similarity({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert dd.similarity(set(), set()) == 0.0


def test_feature_title_matches_its_task(ralf):
    matches = dd.find_duplicates(F005_TITLE, root=ralf)
    assert [m.task_id for m in matches] == ["TASK-1769952151"]
    assert matches[0].similarity == 1.0 and matches[0].status == "pending"
    assert matches[0].path.name == "TASK-1769952151-implement-feature-f005.md"
    assert dd.is_duplicate(F005_TITLE, root=ralf)


def test_completed_tasks_count_too(ralf):
    matches = dd.find_duplicates("Fix the critical API mismatch in main.py", root=ralf)
    assert [(m.task_id, m.status) for m in matches] == [("TASK-1738363312", "completed")]


@pytest.mark.parametrize("title", ["Water the office plants", "Implement Feature F-005", "Implement Feature"])
def test_unrelated_or_partial_titles_match_nothing(ralf, title):
    assert dd.find_duplicates(title, root=ralf) == []
    assert not dd.is_duplicate(title, root=ralf)


def test_text_is_compared_with_the_objective(ralf):
    objective = task_store.find_task("TASK-1769952152", root=ralf).objective
    reworded = "Build user preference and configuration support"
    assert dd.find_duplicates(reworded, root=ralf) == []
    matches = dd.find_duplicates(reworded, objective, root=ralf)
    assert matches[0].task_id == "TASK-1769952152" and 0.8 <= matches[0].similarity < 1.0


def test_threshold_argument_and_config(ralf):
    loose = dd.find_duplicates("Implement Feature F-005", root=ralf, threshold=0.3)
    assert [m.task_id for m in loose][:1] == ["TASK-1769952151"]
    assert [m.similarity for m in loose] == sorted((m.similarity for m in loose), reverse=True)
    (ralf / "swarm.yaml").write_text("duplicates:\n  threshold: 0.3\n")
    assert [m.task_id for m in dd.find_duplicates("Implement Feature F-005", root=ralf)] == \
        [m.task_id for m in loose]
    for bad in (0, 1.5, "high"):
        with pytest.raises(ValidationError):
            dd.find_duplicates("x", root=ralf, threshold=bad)


def test_check_new_task_raises_naming_the_closest(ralf):
    with pytest.raises(DuplicateTaskError) as caught:
        dd.check_new_task(F005_TITLE, root=ralf)
    assert caught.value.task_id == "TASK-1769952151" and "100% similar" in str(caught.value)
    dd.check_new_task("Water the office plants", root=ralf)


def test_a_broken_task_file_is_an_error_not_a_silent_miss(ralf):
    bad = ralf / "tasks" / "active" / "broken.md"
    bad.write_bytes(b"\xff not utf-8")
    with pytest.raises(ParseError):
        dd.find_duplicates(F005_TITLE, root=ralf)
    errors: list = []
    assert [m.task_id for m in dd.find_duplicates(F005_TITLE, root=ralf, errors=errors)] == ["TASK-1769952151"]
    assert len(errors) == 1 and bad.read_bytes() == b"\xff not utf-8"


def run(*args, cwd):
    return subprocess.run([sys.executable, str(LIB / "duplicate_detector.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=30)


def test_cli_exit_codes(ralf, tmp_path):
    found = run(F005_TITLE, "--root", ralf, cwd=tmp_path)
    assert found.returncode == 1 and "TASK-1769952151" in found.stdout
    clean = run("Water the office plants", "--root", ralf, cwd=tmp_path)
    assert clean.returncode == 0 and "no near-duplicates" in clean.stdout
    document = json.loads(run(F005_TITLE, "--root", ralf, "--json", cwd=tmp_path).stdout)
    assert document["duplicate"] and document["matches"][0]["task_id"] == "TASK-1769952151"
    assert run("x", "--root", ralf, "--threshold", "2", cwd=tmp_path).returncode == 2
    assert run("--root", ralf, cwd=tmp_path).returncode == 2


def test_cli_task_mode_excludes_itself(ralf, tmp_path):
    own = ralf / "tasks" / "active" / "TASK-1769952151-implement-feature-f005.md"
    alone = run("--task", own, cwd=tmp_path)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    copy = ralf / "tasks" / "completed" / "copy.md"
    copy.write_text(own.read_text().replace("TASK-1769952151", "TASK-9"))
    twin = run("--task", own, "--json", cwd=tmp_path)
    assert twin.returncode == 1
    assert [m["task_id"] for m in json.loads(twin.stdout)["matches"]] == ["TASK-9"]
    missing = run("--task", tmp_path / "nope.md", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1
