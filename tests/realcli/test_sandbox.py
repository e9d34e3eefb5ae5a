"""The stub model and the network sandbox themselves: what the real-CLI tests stand on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from realcli.conftest import unavailable
from realcli.sandbox import namespace_problem
from realcli.stub_model import Fail, Hang, Step, ToolUse

PROBE = r"""
import json, socket, sys, urllib.request
out = {}
try:  # a packet to another host: the namespace has no route
    socket.create_connection(("192.0.2.1", 80), timeout=2)
    out["direct"] = "connected"
except OSError as exc:
    out["direct"] = type(exc).__name__
req = urllib.request.Request("https://example.com/")  # through HTTPS_PROXY: the stub refuses it
try:
    urllib.request.urlopen(req, timeout=5)
    out["proxied"] = "fetched"
except Exception as exc:
    out["proxied"] = type(exc).__name__
body = json.dumps({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
                   "tools": [{"name": "Write"}]}).encode()
req = urllib.request.Request(sys.argv[1] + "/v1/messages?beta=true", data=body,
                             headers={"content-type": "application/json"})
with urllib.request.urlopen(req, timeout=5) as resp:
    out["stub"] = json.loads(resp.read())
print(json.dumps(out))
"""


def test_inside_the_namespace_only_the_stub_answers(stub, sandbox, tmp_path):
    stub.play([Step(text="[DONE] T-1")])
    proc = sandbox.run([sys.executable, "-c", PROBE, stub.base_url], cwd=tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["direct"] in ("OSError", "TimeoutError", "ConnectionRefusedError") or "Unreachable" in out["direct"]
    assert out["proxied"] != "fetched"
    assert out["stub"]["content"] == [{"type": "text", "text": "[DONE] T-1"}]
    assert [r.target for r in stub.refused] == ["example.com:443"]
    stub.play([])  # the refusal was the point of this test


def test_steps_follow_the_conversation_and_errors_look_like_the_api(stub):
    stub.play([Step(tools=[ToolUse("Write", {"file_path": "/x", "content": "y"})]), Step(text="done"), Fail(401)])

    def post(messages, stream=False):
        body = json.dumps({"model": "m", "messages": messages, "tools": [{"name": "Write"}], "stream": stream})
        req = urllib.request.Request(stub.base_url + "/v1/messages", data=body.encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.read().decode()

    first = json.loads(post([{"role": "user", "content": "go"}]))
    assert first["stop_reason"] == "tool_use" and first["content"][0]["input"] == {"file_path": "/x", "content": "y"}
    assert json.loads(post([{"role": "user", "content": "go"}]))["stop_reason"] == "tool_use"  # a retry: same step
    streamed = post([{"role": "user", "content": "go"}, {"role": "assistant", "content": "x"}], stream=True)
    kinds = [line[7:] for line in streamed.splitlines() if line.startswith("event: ")]
    assert kinds == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    with pytest.raises(urllib.error.HTTPError) as err:
        post([{"role": "user", "content": "go"}, {"role": "assistant", "content": "x"}, {"role": "assistant", "content": "y"}])
    assert err.value.code == 401
    assert json.loads(err.value.read())["error"]["type"] == "authentication_error"
    assert len(stub.turns) == 4


def test_claude_answers_from_the_stub_in_the_sandbox(model, sandbox, claude_cli, tmp_path):
    model.play([Step(text="hello from the stub")])
    proc = sandbox.run(["claude", "-p", "say hello"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hello from the stub" in proc.stdout
    assert "say hello" in model.turns[0].user_text


def test_a_hung_turn_never_answers_until_the_stub_closes(stub):
    stub.play([Hang()])
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "go"}], "tools": [{"name": "W"}]})
    req = urllib.request.Request(stub.base_url + "/v1/messages", data=body.encode(),
                                 headers={"content-type": "application/json"})
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        urllib.request.urlopen(req, timeout=0.5)
    assert len(stub.turns) == 1


@pytest.mark.parametrize("required, outcome", [("1", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_a_missing_cli_skips_or_fails_when_required(monkeypatch, required, outcome):
    monkeypatch.setenv("SWARM_REQUIRE_REAL_CLIS", required)
    with pytest.raises(outcome, match="the reason"):
        unavailable("the reason")


def test_no_unshare_is_a_stated_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert namespace_problem() == "unshare (util-linux) is not installed"


ROOTLESS = r"""
import sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from stub_model import StubModel, Step
from sandbox import Sandbox
where = Path(tempfile.mkdtemp())
with StubModel(socket_path=where / "s.sock") as stub, Sandbox(stub, where / "home") as box:
    stub.play([Step(text="rootless ok")])
    probe = "import sys, urllib.request as u; print(u.urlopen(u.Request(sys.argv[1] + '/v1/messages', " \
            "data=b'{\"tools\": [1]}', headers={'content-type': 'application/json'})).read().decode())"
    proc = box.run([sys.executable, "-c", probe, stub.base_url], cwd=where)
    print(proc.returncode, proc.stdout, proc.stderr)
"""


def test_rootless_sandbox_joins_the_user_namespace_too(tmp_path):
    """As a user without privileges the namespace is ``unshare -rn``, entered with ``nsenter -U``
    (which must keep its credentials: setgroups is refused in such a namespace)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root to run the check as an unprivileged user (setpriv)")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    python = next((p for p in (sys.executable, "/usr/bin/python3")
                   if subprocess.run([*nobody, "unshare", "-rn", p, "-c", ""], capture_output=True).returncode == 0),
                  None)
    if python is None:
        pytest.skip("no Python interpreter an unprivileged user may run")
    proc = subprocess.run([*nobody, python, "-c", ROOTLESS, str(Path(__file__).parent)], capture_output=True,
                          text=True, timeout=60, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    if "unshare -rn failed" in proc.stderr:
        pytest.skip(f"unprivileged user namespaces are disabled here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0 and proc.stdout.startswith("0 ") and "rootless ok" in proc.stdout, proc.stdout + proc.stderr


def test_a_responses_turn_may_hold_text_and_several_tool_calls():
    from realcli.stub_model import _responses_turns

    user = {"role": "user", "content": "go"}
    said = {"type": "message", "role": "assistant", "content": []}
    call, output = {"type": "custom_tool_call"}, {"type": "custom_tool_call_output"}
    assert _responses_turns([user]) == 0
    assert _responses_turns([user, said, call, output]) == 1
    assert _responses_turns([user, said, call, output, call, call, output, output]) == 2
