"""The stub model and the network sandbox themselves: what the real-CLI tests stand on."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from realcli.stub_model import Fail, Step, ToolUse

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
