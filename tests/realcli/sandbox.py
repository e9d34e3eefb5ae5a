"""Run real agent CLIs in a loopback-only network namespace that reaches only the stub model.

    with StubModel(socket_path=short_dir / "stub.sock") as stub, Sandbox(stub, home) as box:
        box.run(["claude", "-p", "hi"], cwd=repo, env=box.env(ANTHROPIC_MODEL="x"))

``Sandbox`` starts one *holder* process in a new network namespace (``unshare -n`` as root,
``unshare -rn`` otherwise). The holder brings ``lo`` up and listens on 127.0.0.1:PORT inside
the namespace (PORT is the stub's own TCP port, so ``stub.base_url`` means the same inside and
out), forwarding every connection to the stub's unix socket: a path-named unix socket is a
file, and files cross network namespaces; TCP does not. Any command joins that namespace
through ``wrap`` (``nsenter -t HOLDER -n``; rootless, ``-U --preserve-credentials`` too), so
several processes (an executor and the CLI it starts, a tmux server and the CLI in its pane)
share one namespace and one stub. A daemon started through ``wrap`` (a tmux server) outlives
the holder in that namespace, but the bridge to the stub goes with the holder: stop the
daemon first. Nothing in
the namespace can reach another host: there is no interface but ``lo``, and the proxy
variables point at the stub, which refuses and records every attempt (``stub.refused``).

``env`` builds a CLI's environment from scratch (never the caller's, so no real key or token
leaks in): a private ``HOME`` seeded so no first-run screen blocks, the variables that turn
off the CLIs' own update checks and telemetry, the stub's URL and a fake key.

``namespace_problem()`` says why no namespace can be made here (or None); ``find_cli(name)``
finds a pinned CLI in tools/agent-clis. Run as a script, this file is the holder itself.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

__all__ = ["Sandbox", "namespace_problem", "find_cli", "seed_home", "CLI_BIN", "FAKE_KEY"]

REPO = Path(__file__).resolve().parents[2]
CLI_BIN = REPO / "tools" / "agent-clis" / "node_modules" / ".bin"
FAKE_KEY = "sk-ant-stub-0000000000000000000000000000"  # the stub accepts any key; this one is obviously fake
READY = "sandbox-ready"


def find_cli(name: str) -> Optional[Path]:
    """The pinned CLI ``name`` installed by tools/install-agent-clis, or None."""
    path = CLI_BIN / name
    return path if path.exists() and os.access(path, os.X_OK) else None


def _unshare_argv() -> list[str]:
    return ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]


def namespace_problem() -> Optional[str]:
    """Why a loopback-only network namespace cannot be made here, or None when it can."""
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    try:
        probe = subprocess.run([*_unshare_argv(), "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{' '.join(_unshare_argv())} could not run: {exc}"
    if probe.returncode != 0:
        hint = "" if os.geteuid() == 0 else (" (unprivileged user namespaces may be off: sysctl "
                                             "kernel.unprivileged_userns_clone or kernel.apparmor_restrict_unprivileged_userns)")
        return f"{' '.join(_unshare_argv())} failed: {probe.stderr.strip() or probe.returncode}{hint}"
    return None


def seed_home(home: Path, *, trusted: Sequence[os.PathLike] = (), approve_key: Optional[str] = None) -> Path:
    """A private HOME in which the CLIs start without first-run screens.

    ``trusted`` directories are marked as accepted in Claude Code's workspace-trust dialog and
    ``approve_key`` (a key) as approved in its "use this API key?" dialog; by default neither is,
    so an interactive test sees those dialogs as a new user does. Headless (-p) runs show no dialog.
    """
    home.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"hasCompletedOnboarding": True, "numStartups": 1, "autoUpdates": False,
                             "hasSeenTasksHint": True, "bypassPermissionsModeAccepted": False,
                             "projects": {str(Path(p)): {"hasTrustDialogAccepted": True, "allowedTools": []}
                                          for p in trusted}}
    if approve_key:
        state["customApiKeyResponses"] = {"approved": [approve_key[-20:]], "rejected": []}
    (home / ".claude.json").write_text(json.dumps(state, indent=2))
    (home / ".claude").mkdir(exist_ok=True)
    (home / ".codex").mkdir(exist_ok=True)
    (home / ".gemini").mkdir(exist_ok=True)
    return home


class Sandbox:
    """A network namespace with only ``lo``, where 127.0.0.1:``port`` is the stub; a context manager."""

    def __init__(self, stub: Any, home: os.PathLike, *, trusted: Sequence[os.PathLike] = (),
                 approve_key: Optional[str] = None) -> None:
        """``trusted`` and ``approve_key`` seed the home as ``seed_home`` says (default: neither)."""
        if stub.socket_path is None:
            raise ValueError("the stub needs a socket_path to be reachable from a namespace")
        self.port: int = stub.port
        self.socket_path = Path(stub.socket_path)
        self.base_url: str = stub.base_url
        self.home = seed_home(Path(home), trusted=trusted, approve_key=approve_key)
        self._seed_codex()
        self._seed_gemini()
        self.holder: Optional[subprocess.Popen] = None
        self._rootless = os.geteuid() != 0

    def _seed_codex(self) -> None:
        """Codex's config: the stub as its model provider, and its own network calls (update
        check, analytics, plugin and app sync) off, so a run makes no request the stub refuses.
        Its workspace-write sandbox also lets it write to /tmp and $TMPDIR by default, where the
        tests' directories are: those are excluded, so "outside the workspace" means it."""
        (self.home / ".codex" / "config.toml").write_text(
            'model_provider = "stub"\n'
            'check_for_update_on_startup = false\n'
            f'[model_providers.stub]\nname = "stub"\nbase_url = "{self.base_url}/v1"\n'
            'env_key = "OPENAI_API_KEY"\nwire_api = "responses"\n'
            # One retry, as the claude preset's CLAUDE_CODE_MAX_RETRIES=1: an API error fails in seconds.
            'request_max_retries = 1\nstream_max_retries = 1\n'
            '[analytics]\nenabled = false\n'
            '[features]\nplugins = false\nremote_plugin = false\napps = false\n'
            '[sandbox_workspace_write]\nexclude_slash_tmp = true\nexclude_tmpdir_env_var = true\n')

    def _seed_gemini(self) -> None:
        """Gemini CLI's settings: the API-key login chosen (else headless runs stop with "Invalid
        auth method selected"), its update check and usage statistics off, and one attempt per
        request (its default, 10 with backoff, sits for minutes on an overloaded API)."""
        (self.home / ".gemini" / "settings.json").write_text(json.dumps({
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "general": {"disableAutoUpdate": True, "disableUpdateNag": True, "maxAttempts": 1},
            "privacy": {"usageStatisticsEnabled": False}, "telemetry": {"enabled": False}}, indent=2))

    def start(self) -> "Sandbox":
        problem = namespace_problem()
        if problem:
            raise RuntimeError(f"no network namespace: {problem}")
        self.holder = subprocess.Popen(
            [*_unshare_argv(), sys.executable, os.path.abspath(__file__), "--hold", str(self.port),
             str(self.socket_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline().strip()  # the holder writes one line when it listens
        if line != READY:
            holder, self.holder = self.holder, None
            self._stop(holder)
            why = holder.stderr.read()[-500:]
            holder.stderr.close()
            raise RuntimeError(f"the namespace holder did not start: {line!r} {why}")
        return self

    def close(self) -> None:
        """Stop the holder: its namespace goes with the last process in it."""
        holder, self.holder = self.holder, None
        if holder is not None:
            self._stop(holder)
            holder.stderr.close()

    @staticmethod
    def _stop(holder: subprocess.Popen) -> None:
        try:
            holder.stdin.close()  # the holder exits at EOF on stdin
        except OSError:
            pass
        try:
            holder.wait(timeout=5)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
        holder.stdout.close()

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace (prefix it with nsenter into the holder's namespace)."""
        if self.holder is None:
            raise RuntimeError("the sandbox is not started")
        enter = ["nsenter", "-t", str(self.holder.pid)]
        # Rootless: join the holder's user namespace too, keeping our ids (nsenter's setgroups is refused there).
        enter += ["-U", "--preserve-credentials", "-n"] if self._rootless else ["-n"]
        return [*enter, "--", *map(str, argv)]

    def env(self, **extra: str) -> dict[str, str]:
        """A CLI's environment, built from scratch; ``extra`` adds to it or overrides it."""
        path = os.pathsep.join([str(CLI_BIN), os.path.dirname(sys.executable), *filter(None, [
            os.path.dirname(shutil.which("node") or ""), os.path.dirname(shutil.which("git") or "")]),
            "/usr/local/bin", "/usr/bin", "/bin"])
        env = {
            "PATH": path, "HOME": str(self.home), "USER": "swarm", "LANG": "C.UTF-8", "TERM": "xterm-256color",
            "XDG_CONFIG_HOME": str(self.home / ".config"), "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"), "XDG_STATE_HOME": str(self.home / ".local" / "state"),
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
            "HTTPS_PROXY": self.base_url, "HTTP_PROXY": self.base_url, "https_proxy": self.base_url,
            "http_proxy": self.base_url, "ALL_PROXY": self.base_url, "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "ANTHROPIC_BASE_URL": self.base_url, "ANTHROPIC_API_KEY": FAKE_KEY,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1", "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1", "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
            "CODEX_HOME": str(self.home / ".codex"), "OPENAI_API_KEY": "sk-stub-not-a-key",
            "STUB_API_KEY": "sk-stub-not-a-key", "GEMINI_API_KEY": "stub-not-a-key",
            "GOOGLE_GEMINI_BASE_URL": self.base_url,
            # Gemini CLI otherwise starts itself twice (the second time with a larger heap): 3-5 s a run.
            "GEMINI_CLI_NO_RELAUNCH": "true",
            "NODE_OPTIONS": "", "NO_COLOR": "1", "GIT_TERMINAL_PROMPT": "0",
        }
        for name in ("PYTHONPATH", "SSL_CERT_FILE"):
            if name in os.environ:
                env[name] = os.environ[name]
        env.update(extra)
        return env

    def run(self, argv: Sequence[str], *, cwd: os.PathLike, env: Optional[Mapping[str, str]] = None,
            timeout: float = 60, input: Optional[str] = None) -> subprocess.CompletedProcess:
        """Run ``argv`` in the namespace and wait for it (text output captured)."""
        return subprocess.run(self.wrap(argv), cwd=cwd, env=dict(env or self.env()), capture_output=True,
                              text=True, timeout=timeout, input=input if input is not None else "")

    def popen(self, argv: Sequence[str], *, cwd: os.PathLike, env: Optional[Mapping[str, str]] = None,
              **kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` in the namespace; the caller waits for it and reaps it."""
        return subprocess.Popen(self.wrap(argv), cwd=cwd, env=dict(env or self.env()), **kwargs)


# ---------------------------------------------------------------------- the holder process

def _loopback_up() -> None:
    """``ip link set lo up`` without iproute2: SIOCGIFFLAGS, set IFF_UP, SIOCSIFFLAGS."""
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, 0x8913, request))[1]
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH14x", b"lo", flags | 0x1))


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


def _bridge(client: socket.socket, socket_path: str) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(socket_path)
    except OSError:
        client.close()
        upstream.close()
        return
    back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    back.start()
    _pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _hold(port: int, socket_path: str) -> int:
    _loopback_up()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_bridge, args=(client, socket_path), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    print(READY, flush=True)
    sys.stdin.read()  # until the test closes our stdin (or dies)
    listener.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--hold":
        raise SystemExit(_hold(int(sys.argv[2]), sys.argv[3]))
    print("usage: sandbox.py --hold PORT SOCKET  (the namespace holder; see the module docstring)", file=sys.stderr)
    raise SystemExit(2)
