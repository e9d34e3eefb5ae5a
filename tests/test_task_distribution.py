"""task_distribution.py: analysis, grouping, splitting into sub-task files, idempotence, races, CLI."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import task_distribution as td
from swarmfile import tasks
from swarmfile.task_document import render_task
from swarmfile import task_store
from swarmfile.config import DEFAULTS, Config
from conftest import LIB, RALF
from swarmfile.errors import ParseError, ValidationError
from procs import run_together

pytestmark = pytest.mark.timeout(60)

F005 = "TASK-1769952151-implement-feature-f005.md"
# F-005 as RALF wrote it is one piece of work (its criteria share subjects and end in "Documented
# in ..."): these criteria, each in a file of its own, make it really splittable.
INDEPENDENT = ["- [ ] Changelog writer in `lib/autodoc/changelog.py`",
               "- [ ] Index page builder in `lib/autodoc/index_page.py`",
               "- [ ] Template loader in `lib/autodoc/templates.py`",
               "- [ ] Markdown link checker in `lib/autodoc/links.py`"]


def independent_f005(root: Path) -> Path:
    """F-005 of the RALF copy at ``root`` with its Success Criteria replaced by INDEPENDENT."""
    path = root / "tasks" / "active" / F005
    text = path.read_text()
    start = text.index("## Success Criteria\n\n") + len("## Success Criteria\n\n")
    end = text.index("\n\n## Approach")
    path.write_text(text[:start] + "\n".join(INDEPENDENT) + text[end:])
    return path


@pytest.fixture(autouse=True)
def _fresh_cache():
    task_store.clear_cache()
    yield
    task_store.clear_cache()


def make_task(workspace: Path, criteria, *, task_id="TASK-1", objective="Build several independent parts.",
              files=(), status="pending", name=None) -> Path:
    return task_store.new_task_file(task_id, "Build the parts", root=workspace, filename=name or f"{task_id}.md",
                               status=status, priority="high", objective=objective, criteria=criteria,
                               files=files, depends_on=["TASK-0"], created="2026-02-01T00:00:00Z")


def criteria_of(path: Path) -> list[str]:
    return [i.text for i in task_store.load_task(path, use_cache=False).success_criteria]


def sub_files(workspace: Path) -> list[str]:
    return sorted(p.name for p in (workspace / "tasks" / "active").glob("*-SUB*.md"))


# ---------------------------------------------------------------------------- analysis


def test_feature_task_as_written_is_kept_whole(ralf):
    path = ralf / "tasks" / "active" / F005
    analysis = td.analyze_task_structure(path)
    assert not analysis.can_parallelize and len(analysis.groups) == 1
    assert analysis.units[6].files == ("operations/.docs/auto-docs-guide.md",)
    assert not analysis.units[2].follow_up  # "documentation" is the theme of a documentation generator
    assert any("names no file and no subject" in e for e in analysis.sequential_evidence)


def test_independent_criteria_in_their_own_files_are_split(ralf):
    path = independent_f005(ralf)
    analysis = td.analyze_task_structure(path)
    assert analysis.can_parallelize and td.can_parallelize(path)
    assert analysis.unit_kind == "criterion" and len(analysis.units) == 4 and len(analysis.groups) == 4
    assert analysis.units[0].files == ("lib/autodoc/changelog.py",)
    assert any("independent groups" in r for r in analysis.reasons)
    assert analysis.parallel_evidence == ()  # "and" is no evidence of parallel work any more


@pytest.mark.parametrize("name, reason", [
    ("TASK-1769800176-create-workflow-loader-library.md", "status is 'completed'"),
    ("TASK-1738300332-fix-skills-system-critical-issues.md", "status is 'in_progress'"),
])
def test_finished_or_running_tasks_are_not_split(ralf, name, reason):
    path = ralf / "tasks" / "completed" / name
    analysis = td.analyze_task_structure(path)
    assert not analysis.can_parallelize and any(reason in r for r in analysis.reasons)
    before = path.read_bytes()
    assert td.distribute_task(path, root=ralf) == []
    assert path.read_bytes() == before and sub_files(ralf) == []


@pytest.mark.parametrize("criteria, objective, files, reason", [
    (["only one thing"], "Build it.", (), "only 1 unit"),
    ([], "Build it.", (), "only 0 unit"),
    (["write the schema", "load the data", "index it"], "First write the schema, then load data, then index.",
     (), "read as sequential"),
    (["edit `lib/a.py` header", "edit lib/a.py body", "then test it"], "Several parts.", (), "linked"),
])
def test_tasks_that_are_not_split_say_why(workspace, criteria, objective, files, reason):
    path = make_task(workspace, criteria, objective=objective, files=files)
    before = path.read_bytes()
    analysis = td.analyze_task_structure(path)
    assert not analysis.can_parallelize
    assert any(reason in r for r in analysis.reasons), analysis.reasons
    assert td.distribute_task(path) == []
    assert path.read_bytes() == before and sub_files(workspace) == []


def test_files_alone_are_not_split(workspace):
    path = task_store.new_task_file("TASK-2", "Touch files", root=workspace, filename="TASK-2.md",
                               files=["lib/a.py", "lib/b.py", "docs/c.md"])
    analysis = td.analyze_task_structure(path)
    assert analysis.unit_kind == "file" and not analysis.can_parallelize
    assert any("files alone" in r for r in analysis.reasons)
    assert td.distribute_task(path, max_subtasks=2) == []


def test_numbered_steps_stay_together(workspace):
    text = ("# TASK-3: Steps\n\n**Status:** pending\n\n## Objective\n\nDo it.\n\n## Approach\n\n"
            "### 1. Prepare\n\nprep\n\n### 2. Build\n\nbuild\n\n### 3. Ship\n\nship\n")
    path = workspace / "tasks" / "active" / "TASK-3.md"
    path.write_text(text)
    analysis = td.analyze_task_structure(path)
    assert analysis.unit_kind == "step" and len(analysis.units) == 3
    assert analysis.groups == ((0, 1, 2),) and not analysis.can_parallelize


def test_shared_files_and_order_words_group_units(workspace):
    criteria = ["change `lib/x.py` parser", "write `docs/guide.md`", "extend lib/x.py edge cases",
                "then release `setup.py`", "strengthen `lib/auth.py` authentication"]  # no whole "then" in these
    path = make_task(workspace, criteria, files=["lib/x.py", "docs/guide.md", "lib/extra.py"])
    analysis = td.analyze_task_structure(path)
    assert analysis.groups == ((0, 2, 3), (1,), (4,))
    assert any("share files: lib/x.py" in e for e in analysis.sequential_evidence)
    subs = td.distribute_task(path, ["e1", "e2"])
    assert [criteria_of(s.path) for s in subs] == [criteria[:1] + criteria[2:4], [criteria[1]], [criteria[4]]]
    assert [s.assigned_to for s in subs] == ["e1", "e2", "e1"]
    first = task_store.load_task(subs[0].path)
    assert first.files_to_modify == ("lib/x.py", "setup.py")
    assert "lib/extra.py" in first.section("Related Files").text


@pytest.mark.parametrize("criteria, why", [
    # The examples of issue 10: a test, a notification and a ranking depend on the work before them.
    (["Hook in `hooks/a.py`", "Hook in `hooks/b.py`", "Test with 2+ task completions"], "checks, documents"),
    (["Audit `docs/a.md`", "Audit `docs/b.md`", "All contributors notified of changes"], "checks, documents"),
    (["Ideas written in `ideas/a.md`", "Ideas written in `ideas/b.md`", "Features prioritized by value/effort"],
     "checks, documents"),
    (["Parser in `lib/parse.py`", "Parser error messages are friendly"], "share the subject 'parse'"),
    (["Loader in `lib/load.py`", "Results cached between runs"], "names no file and no subject"),
])
def test_dependent_criteria_stay_with_the_work_they_follow(workspace, criteria, why):
    path = make_task(workspace, criteria, objective="Build it.")
    analysis = td.analyze_task_structure(path)
    assert not analysis.can_parallelize and len(analysis.groups) == 1, analysis.groups
    assert any(why in e for e in analysis.sequential_evidence), analysis.sequential_evidence


def test_acceptance_criteria_are_the_units(workspace):
    text = ("# TASK-7: Two reports\n\n**Status:** pending\n\n## Objective\n\nReports.\n\n"
            "## Approach\n\n### Step 5: check\n\n- [ ] run the linter\n- [ ] run the tests\n\n"
            "## Acceptance Criteria\n\n- [ ] Sales report in `reports/sales.py`\n"
            "- [ ] Stock report in `reports/stock.py`\n")
    path = workspace / "tasks" / "active" / "TASK-7.md"
    path.write_text(text)
    assert [i.text for i in task_store.load_task(path).success_criteria] == [
        "Sales report in `reports/sales.py`", "Stock report in `reports/stock.py`"]
    subs = td.distribute_task(path)
    assert [criteria_of(s.path) for s in subs] == [["Sales report in `reports/sales.py`"],
                                                   ["Stock report in `reports/stock.py`"]]


def test_a_sub_task_whose_units_name_no_file_gets_the_parents_files(workspace):
    path = make_task(workspace, ["Sales figures in `reports/sales.py`", "Staff figures"],
                     files=["reports/common.py", "reports/sales.py"])
    task = task_store.load_task(path)
    units = (td.Unit(0, "criterion", "Sales figures in `reports/sales.py`", 1, ("reports/sales.py",)),
             td.Unit(1, "criterion", "Staff figures", 2))
    analysis = td.Analysis(task.task_id, path, True, "criterion", units, ((0,), (1,)), (), (), ())
    planned = td.plan_subtasks(analysis, task)
    assert [s.files for s in planned] == [("reports/sales.py",), ("reports/common.py", "reports/sales.py")]


def test_keywords_come_from_swarm_yaml(workspace):
    (workspace / "swarm.yaml").write_text("distribution:\n  sequential_keywords: [zorp]\n  max_subtasks: 5\n")
    criteria = ["alpha in `lib/a.py`", "zorp beta in `lib/b.py`", "then gamma in `lib/c.py`"]
    path = make_task(workspace, criteria)
    analysis = td.analyze_task_structure(path)
    assert analysis.groups == ((0, 1), (2,))
    assert [criteria_of(s.path) for s in td.distribute_task(path)] == [criteria[:2], criteria[2:]]


def test_bad_keyword_config_is_a_clear_error(workspace):
    (workspace / "swarm.yaml").write_text("distribution:\n  parallel_keywords: parallel\n")
    path = make_task(workspace, ["a", "b"])
    with pytest.raises(ValidationError, match="parallel_keywords must be a list"):
        td.analyze_task_structure(path)


# ---------------------------------------------------------------------------- splitting


def test_split_writes_sub_tasks_and_records_them_on_the_parent(ralf):
    parent = independent_f005(ralf)
    before = parent.read_bytes()
    subs = td.distribute_task(parent, ["executor-1", "executor-2"], max_subtasks=3)
    ids = [f"TASK-1769952151-SUB{n}" for n in (1, 2, 3)]
    assert [s.task_id for s in subs] == ids
    assert sub_files(ralf) == [f"{i}.md" for i in ids]
    for sub, agent in zip(subs, ["executor-1", "executor-2", "executor-1"]):
        task = task_store.load_task(sub.path)
        assert task.task_id == sub.task_id and task.parent == "TASK-1769952151"
        assert task.assigned_to == agent and task.status is tasks.Status.PENDING
        assert task.priority is tasks.Priority.HIGH and task.created_at is not None
        assert task.type == "implement (feature)" and tasks.validate_task(task) == []
        assert task.objective and task.success_criteria
    after = parent.read_bytes()
    added = b"**Sub-Tasks:** " + ", ".join(ids).encode() + b"\n"
    assert after == before.replace(b"(~1.5 hours)\n", b"(~1.5 hours)\n" + added, 1)
    assert task_store.load_task(parent).sub_tasks == tuple(ids)
    assert sorted(t for s in subs for t in criteria_of(s.path)) == sorted(criteria_of(parent))


def test_split_is_idempotent_even_after_operator_edits(ralf):
    parent = independent_f005(ralf)
    first = td.distribute_task(parent, ["executor-1"])
    edited = first[1].path
    edited.write_text(edited.read_text().replace("**Assigned To:** executor-1", "**Assigned To:** alice")
                      + "\nOperator note.\n")
    snapshot = {p: p.read_bytes() for p in (ralf / "tasks" / "active").iterdir()}
    again = td.distribute_task(parent, ["executor-9"], max_subtasks=2)
    assert [s.task_id for s in again] == [s.task_id for s in first]
    assert again[1].assigned_to == "alice"
    assert {p: p.read_bytes() for p in (ralf / "tasks" / "active").iterdir()} == snapshot


def test_sub_tasks_found_without_the_parent_field_are_returned_and_recorded(ralf):
    parent = independent_f005(ralf)
    subs = td.distribute_task(parent)
    task_store.set_field(parent, "Sub-Tasks", "", root=ralf)  # as if a crash came before the parent's line
    assert task_store.load_task(parent).sub_tasks == ()
    again = td.distribute_task(parent)
    assert [s.task_id for s in again] == [s.task_id for s in subs]
    assert task_store.load_task(parent).sub_tasks == tuple(s.task_id for s in subs)


@pytest.mark.parametrize("name, text", [("TASK-1-SUB2.md", "# OTHER-1: unrelated\n"),
                                        ("other.md", "# TASK-1-SUB2: same id, other name\n")])
def test_a_stray_sub_task_name_or_id_stops_the_whole_split(workspace, name, text):
    path = make_task(workspace, ["a in `lib/a.py`", "b in `lib/b.py`", "c in `lib/c.py`"])
    (workspace / "tasks" / "active" / name).write_text(text)
    before = path.read_bytes()
    with pytest.raises(ValidationError, match="TASK-1-SUB2 already exists"):
        td.distribute_task(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in (workspace / "tasks" / "active").iterdir()) == sorted(["TASK-1.md", name])


def test_split_by_task_id(ralf):
    independent_f005(ralf)
    subs = td.distribute_task("TASK-1769952151", ["e1"], 2, root=ralf)
    assert [s.task_id for s in subs] == ["TASK-1769952151-SUB1", "TASK-1769952151-SUB2"]


def test_an_unreadable_sub_task_is_never_split_over(workspace):
    path = make_task(workspace, ["a in `lib/a.py`", "b in `lib/b.py`"])
    assert td.distribute_task(path)
    task_store.set_field(path, "Sub-Tasks", "", root=workspace)
    (workspace / "tasks" / "active" / "TASK-1-SUB1.md").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ParseError):
        td.distribute_task(path)


def _split_in_child(root: str, parent: str) -> list:
    return [s.task_id for s in td.distribute_task(parent, ["a", "b"], root=root)]


@pytest.mark.parametrize("procs", [2, 4])
def test_concurrent_planners_create_one_set(ralf, procs):
    parent = independent_f005(ralf)
    results = run_together(_split_in_child, [(str(ralf), str(parent))] * procs)
    ids = [f"TASK-1769952151-SUB{n}" for n in (1, 2, 3)]
    assert results == [ids] * procs
    assert sub_files(ralf) == [f"{i}.md" for i in ids]
    assert parent.read_text().count("**Sub-Tasks:**") == 1


@pytest.mark.parametrize("path", sorted((RALF / "tasks").glob("*/*.md")), ids=lambda p: p.name)
def test_every_criterion_lands_in_exactly_one_sub_task_ralf(tmp_path, path):
    root = tmp_path / "ws"
    (root / "tasks" / "active").mkdir(parents=True)
    copy = root / "tasks" / "active" / path.name
    shutil.copy(path, copy)
    task_store.set_field(copy, "Status", "pending", root=root)  # finished fixtures too: split them as if new
    analysis = td.analyze_task_structure(copy, root=root)
    subs = td.distribute_task(copy, root=root)
    assert bool(subs) == analysis.can_parallelize
    if subs:
        got = Counter((i.text, i.checked) for s in subs for i in task_store.load_task(s.path).success_criteria)
        want = Counter((i.text, i.checked) for i in task_store.load_task(copy).success_criteria)
        assert got == want


words = st.sampled_from(["alpha", "beta", "gamma", "delta", "then", "after", "and", "separately", "x"])
mentions = st.sampled_from(["", "", "", " `lib/a.py`", " lib/b.py", " docs/c.md"])
criterion = st.builds(lambda w, m, done: ("- [x] " if done else "") + " ".join(w) + m,
                      st.lists(words, min_size=1, max_size=4), mentions, st.booleans())


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(criterion, min_size=0, max_size=9), st.integers(min_value=2, max_value=4))
def test_every_criterion_lands_in_exactly_one_sub_task_generated(items, limit):
    text = render_task("GEN-1", "Generated", objective="Independent parts.", criteria=items,
                             created="2026-01-01T00:00:00Z")
    task = tasks.parse_task(text, "GEN-1.md")
    analysis = td._analyze(task, Config(Path("/nonexistent"), copy.deepcopy(DEFAULTS)))
    planned = td.plan_subtasks(analysis, task, max_subtasks=limit)
    if not planned:
        return
    assert 2 <= len(planned) <= limit
    assert Counter(c for s in planned for c in s.criteria) == Counter(u.markdown() for u in analysis.units)
    where = {i: n for n, s in enumerate(planned) for i in s.units}
    assert sorted(where) == list(range(len(analysis.units)))
    for unit in analysis.units:  # grouping holds: shared files and order words stay together
        if unit.order_words and unit.index:
            assert where[unit.index] == where[unit.index - 1]
        for other in analysis.units:
            if set(unit.files) & set(other.files):
                assert where[unit.index] == where[other.index]


# ---------------------------------------------------------------------------- CLI


def cli(*args, cwd):
    return subprocess.run([sys.executable, str(LIB / "task_distribution.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=30)


def test_cli_plans_then_splits(ralf, tmp_path):
    parent = independent_f005(ralf)
    before = parent.read_bytes()
    shown = cli(parent, "--agents", "e1,e2", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "can be split" in shown.stdout and "TASK-1769952151-SUB3  assigned to e1" in shown.stdout
    assert parent.read_bytes() == before and sub_files(ralf) == []
    done = cli(parent, "--split", "--max-subtasks", "2", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert [s["task_id"] for s in document["subtasks"]] == ["TASK-1769952151-SUB1", "TASK-1769952151-SUB2"]
    assert document["analysis"]["can_parallelize"] and all(Path(s["path"]).is_file() for s in document["subtasks"])
    assert sub_files(ralf) == ["TASK-1769952151-SUB1.md", "TASK-1769952151-SUB2.md"]


@pytest.mark.parametrize("content", [None, b"\xff\xfe\x00garbage", b"no title\n"])
def test_cli_bad_task_file_exits_2_with_one_line(tmp_path, content):
    (tmp_path / "events.yaml").write_text("events:\n")  # the file's directory is its workspace
    path = tmp_path / "TASK.md"
    if content is not None:
        path.write_bytes(content)
    result = cli(path, "--split", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: {path}") and result.stderr.count("\n") == 1
    if content is not None:
        assert path.read_bytes() == content


def test_cli_help_from_anywhere(tmp_path):
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and "--split" in result.stdout


def test_cli_splits_every_pending_task_with_progress(workspace):
    parallel = dict(objective="Three independent parts; each can be done separately, in parallel.",
                    criteria=["Part in `a/one.py`", "Part in `b/two.py`", "Part in `c/three.py`"])
    for n in range(1, 4):
        task_store.new_task_file(f"BIG-{n}", f"Big job {n}", root=workspace, **parallel)
    task_store.new_task_file("SMALL-1", "One small thing", root=workspace, criteria=["only this"])
    out = subprocess.run([sys.executable, str(LIB / "task_distribution.py"), "--all", "--split", "--root", str(workspace)],
                         capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines()[-1].strip() == "4/4 tasks"
    assert "3 of 4 pending tasks are split" in out.stdout
    assert "SMALL-1: not split" in out.stdout
    assert all(task_store.find_task(f"BIG-{n}", root=workspace).sub_tasks for n in range(1, 4))
    bad = subprocess.run([sys.executable, str(LIB / "task_distribution.py"), "--root", str(workspace)],
                         capture_output=True, text=True, cwd="/")
    assert bad.returncode == 2 and bad.stderr.startswith("error: give one TASK.md or --all")
