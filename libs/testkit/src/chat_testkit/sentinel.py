"""Redis with Sentinel for tests: a primary, a replica and three sentinels, all real
`redis-server` processes (sentinels are `redis-server --sentinel`) on loopback.

Sentinels and replicas speak TCP (they announce `ip:port` to each other), so unlike
`servers.RedisServer` these listen on TCP ports, reserved by binding port 0 and released
just before the servers start; a server that finds its port taken exits and the whole
set starts again on fresh ports (`START_ATTEMPTS`). Readiness is asked, never slept for:
the replica's link to the primary is up, and every sentinel names the primary, sees the
replica and knows the two other sentinels.

Failover timings are shortened (`DOWN_AFTER_MS`): production keeps Sentinel's own
defaults or a few seconds (see the README's scale-out section).
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import redis

from chat_testkit.servers import STARTUP_TIMEOUT_S, Missing, _Process, _tail

MASTER = "mymaster"
#: A primary silent this long is subjectively down for a sentinel (ms); two agreeing
#: make it objectively down and start the failover.
DOWN_AFTER_MS = 500
FAILOVER_TIMEOUT_MS = 3_000
START_ATTEMPTS = 3


class RedisNode(_Process):
    """One redis-server (or sentinel) on a loopback TCP port."""

    def __init__(self, binary: str, workdir: Path, name: str, port: int, args: list[str]) -> None:
        self.name = name
        self.port = port
        workdir.mkdir(parents=True, exist_ok=True)
        self._spawn([binary, *args], workdir / f"{name}.log")

    def client(self) -> redis.Redis:
        """A short-lived synchronous client (readiness checks)."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1
        )

    def ask(self, *command: str) -> object:
        """One command's reply, or None while the server does not answer."""
        try:
            with self.client() as conn:
                return conn.execute_command(*command)
        except (redis.RedisError, OSError):
            return None


class RedisSentinelSet:
    """A primary, a replica and three sentinels watching them as `MASTER`."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise Missing("redis-server is not installed (Debian package redis-server)")
        self.workdir = workdir
        for attempt in range(START_ATTEMPTS):
            self._spawn_all(binary, workdir / f"start-{attempt}")
            try:
                self._wait_ready()
                return
            except _PortTaken:
                self.stop()
        raise RuntimeError(f"redis sentinel set: ports taken {START_ATTEMPTS} times in a row")

    def _spawn_all(self, binary: str, workdir: Path) -> None:
        with ExitStack() as held:
            ports = []
            for _ in range(5):
                sock = held.enter_context(socket.socket())
                sock.bind(("127.0.0.1", 0))
                ports.append(sock.getsockname()[1])
        primary_port, replica_port, *sentinel_ports = ports
        # No 5 s wait before the replica's first (diskless) sync.
        common = [
            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        self.primary = RedisNode(
            binary,
            workdir,
            "redis-primary",
            primary_port,
            ["--port", str(primary_port), "--dir", str(workdir), *common],
        )
        self.replica = RedisNode(
            binary,
            workdir,
            "redis-replica",
            replica_port,
            [
                "--port", str(replica_port), "--dir", str(workdir), *common,
                "--replicaof", "127.0.0.1", str(primary_port),
            ],
        )  # fmt: skip
        self._sentinel_ports = sentinel_ports
        self._binary = binary
        self._dir = workdir
        self.sentinels: list[RedisNode] = []

    def _spawn_sentinels(self) -> None:
        workdir, binary, primary_port = self._dir, self._binary, self.primary.port
        for i, port in enumerate(self._sentinel_ports):
            # A sentinel rewrites its configuration file: each gets its own.
            conf = workdir / f"sentinel-{i + 1}.conf"
            conf.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {workdir}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            self.sentinels.append(
                RedisNode(binary, workdir, f"sentinel-{i + 1}", port, [str(conf), "--sentinel"])
            )

    @property
    def nodes(self) -> list[RedisNode]:
        """Every process of the set."""
        return [self.primary, self.replica, *self.sentinels]

    def _wait_ready(self) -> None:
        # Sentinels only after the replica is attached: they find replicas in the
        # primary's INFO, which they read at start and then every 10 s.
        self._wait(self._replica_linked)
        self._spawn_sentinels()
        self._wait(self._ready)

    def _wait(self, predicate: Callable[[], bool]) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not predicate():
            for node in self.nodes:
                if node.proc.poll() is not None:
                    log = _tail(node.log)
                    if "Address already in use" in log:
                        raise _PortTaken
                    raise RuntimeError(f"{node.name} exited with {node.proc.returncode}:\n{log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis sentinel set not ready:\n{self.logs()}")
            time.sleep(0.05)

    def _replica_linked(self) -> bool:
        info = self.replica.ask("INFO", "replication")
        return isinstance(info, dict) and info.get("master_link_status") == "up"

    def _ready(self) -> bool:
        # Sentinels learn of each other from hello messages every 2 s.
        for sentinel in self.sentinels:
            if self.primary_of(sentinel) != self.primary.port:
                return False
            replicas = sentinel.ask("SENTINEL", "REPLICAS", MASTER)
            others = sentinel.ask("SENTINEL", "SENTINELS", MASTER)
            if not isinstance(replicas, list) or not isinstance(others, list):
                return False
            if len(replicas) != 1 or len(others) != len(self.sentinels) - 1:
                return False
        return True

    @staticmethod
    def primary_of(sentinel: RedisNode) -> int | None:
        """The primary's port as `sentinel` sees it now."""
        answer = sentinel.ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        if isinstance(answer, list | tuple) and len(answer) == 2:
            return int(answer[1])
        return None

    @property
    def addresses(self) -> str:
        """`CHAT_REDIS_SENTINELS`."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def kill_primary(self) -> None:
        """SIGKILL the primary (a crash: no goodbye to the replica or the sentinels)."""
        self.primary.kill()

    def wait_failover(self, timeout: float = 20.0) -> None:
        """Until every sentinel names the replica as primary and it accepts writes."""
        deadline = time.monotonic() + timeout
        while True:
            promoted = all(self.primary_of(s) == self.replica.port for s in self.sentinels)
            role = self.replica.ask("ROLE")
            if promoted and isinstance(role, list) and role and role[0] in (b"master", "master"):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no failover after {timeout} s:\n{self.logs()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM every process (SIGKILL after 10 s)."""
        for node in self.nodes:
            node.stop()

    def logs(self) -> str:
        """The end of every log."""
        return "\n".join(f"--- {node.name}\n{node.tail()}" for node in self.nodes)


class _PortTaken(Exception):
    """A reserved port was taken before its server bound it."""
