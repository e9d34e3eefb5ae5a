"""Each preset's flags exist in the real, pinned CLI: checked by the CLI's own argument parser."""

from __future__ import annotations

import re
import shutil
import shlex

import pytest

from swarmfile import agents
from realcli.conftest import need_cli

HELP = {"claude": ["--help"], "codex": ["exec", "--help"], "gemini": ["--help"]}


@pytest.mark.parametrize("name", sorted(HELP))
def test_every_flag_of_the_preset_is_in_the_cli_help(name, model, sandbox, tmp_path):
    need_cli(name)
    help_text = sandbox.run([name, *HELP[name]], cwd=tmp_path, timeout=60).stdout
    flags = [t.split("=")[0] for t in shlex.split(agents.PRESETS[name].command) if t.startswith("-")]
    assert flags, "the preset has flags to check"
    missing = [f for f in flags if not re.search(rf"(^|[\s,]){re.escape(f)}([\s,=<]|$)", help_text, re.M)]
    assert missing == [], f"{name} {' '.join(HELP[name])} does not list {missing}"


def test_codex_refuses_the_old_full_auto_flag(model, sandbox, tmp_path):
    """The regression that broke the codex preset: 0.17x no longer knows --full-auto."""
    need_cli("codex")
    proc = sandbox.run(["codex", "exec", "--full-auto", "--help"], cwd=tmp_path, timeout=60)
    assert proc.returncode != 0 and "--full-auto" in proc.stderr


def test_aider_preset_flags_when_aider_is_installed(model, sandbox, tmp_path):
    """aider is a pip package the tests do not install; where it is on PATH, its parser is checked too."""
    aider = shutil.which("aider")
    if aider is None:
        pytest.skip("aider is not installed (pip install aider-chat); the preset's flags were checked "
                    "against aider-chat 0.86.2's argument parser source")
    help_text = sandbox.run([aider, "--help"], cwd=tmp_path, timeout=120).stdout
    flags = [t for t in shlex.split(agents.PRESETS["aider"].command) if t.startswith("-")]
    assert [f for f in flags if f not in help_text] == []
