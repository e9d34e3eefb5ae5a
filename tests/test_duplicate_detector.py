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


def _brute_force(tasks_, title, text, limit, exclude=()):
    """The rule of find_duplicates, task by task (what it did before DuplicateIndex): the reference."""
    import os

    title_words = dd.keywords(title)
    full_words = title_words | dd.keywords(text) if text.strip() else None
    skipped = {os.path.realpath(p) for p in exclude}
    found = []
    for task in tasks_:
        if task.path is not None and os.path.realpath(task.path) in skipped:
            continue
        their_title = dd.keywords(task.title)
        score = dd.similarity(title_words, their_title)
        if full_words is not None and task.objective:
            score = max(score, dd.similarity(full_words, their_title | dd.keywords(task.objective)))
        if score >= limit:
            found.append((task.task_id, str(task.path), score))
    return sorted(found, key=lambda m: (-m[2], m[0]))


@pytest.mark.parametrize("limit", [0.2, 0.5, 0.75, 0.8, 0.9, 1.0])
def test_the_index_finds_exactly_what_comparing_with_every_task_finds(tmp_path, limit):
    import random

    from swarmfile.task_document import render_task
    from swarmfile.tasks import parse_task

    rnd = random.Random(limit)
    vocab = [f"w{n}" for n in range(12)] + ["the", "tests", "test", "index", "Indexes"]  # stopwords, plurals
    def text(low, high):
        return " ".join(rnd.choice(vocab) for _ in range(rnd.randint(low, high)))
    listing = []
    for n in range(120):
        objective = text(0, 9) if n % 4 else ""  # some tasks without an objective
        path = tmp_path / f"T-{n}.md"
        parts = {"objective": objective} if objective else {}
        listing.append(parse_task(render_task(f"T-{n % 100}", text(1, 6) or "w0", **parts), path))  # some ids twice
    index = dd.DuplicateIndex(listing, limit)
    for n in range(200):
        title, body = text(0, 6), text(0, 10) if n % 3 else ""
        exclude = [listing[n % 120].path] if n % 5 == 0 else []
        got = [(m.task_id, str(m.path), m.similarity) for m in index.find(title, body, exclude=exclude)]
        assert got == _brute_force(listing, title, body, limit, exclude), (title, body)


def test_an_index_reuses_the_keywords_of_unchanged_tasks(ralf, monkeypatch):
    listing = task_store.list_tasks(root=ralf, include_completed=True)
    first = dd.DuplicateIndex(listing, 0.8)
    seen = []
    real = dd.keywords
    monkeypatch.setattr(dd, "keywords", lambda text: seen.append(text) or real(text))
    again = dd.DuplicateIndex(listing, 0.8, previous=first)
    assert seen == []
    assert [m.task_id for m in again.find(F005_TITLE)] == [m.task_id for m in first.find(F005_TITLE)]
