"""Child processes of the benchmark: Node (npm install, reference/trivial servers) and the
load generator, which talks JSON lines over stdin/stdout."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).resolve().parent / "node"
#: A load generator's output line can hold a whole result; asyncio's default is 64 KiB.
LINE_LIMIT = 64 << 20


class NodeUnavailable(Exception):
    """Node or its modules cannot be had: the reference is skipped, with this reason."""


def node_binary() -> str | None:
    """`node` from PATH."""
    return shutil.which("node")


def ensure_node_modules() -> str:
    """`node` with bench/node/node_modules installed (`npm ci` on first use)."""
    node = node_binary()
    if node is None:
        raise NodeUnavailable("node is not installed (PATH has no `node`)")
    modules = NODE_DIR / "node_modules"
    if all((modules / name).is_dir() for name in ("socket.io", "ws", "jsonwebtoken")):
        return node
    npm = shutil.which("npm")
    if npm is None:
        raise NodeUnavailable("npm is not installed, and bench/node/node_modules is missing")
    print("bench: installing bench/node dependencies (npm ci)", flush=True)
    done = subprocess.run(
        [npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise NodeUnavailable(f"npm ci failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return node


def _affinity(cpus: set[int] | None) -> Any:
    if cpus is None:
        return None

    def apply() -> None:
        os.sched_setaffinity(0, cpus)

    return apply


class NodeServer:
    """reference.mjs or trivial.mjs on a free loopback port, pinned to `cpus`."""

    def __init__(
        self,
        script: str,
        workdir: Path,
        cpus: set[int] | None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.script = script
        self.env = env
        self.log = workdir / f"{Path(script).stem}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.cpus = cpus

    async def start(self, node: str) -> NodeServer:
        """Start it and wait for `listening <port>`."""
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                node,
                "--expose-gc",
                str(NODE_DIR / self.script),
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=NODE_DIR,
                env={**os.environ, **self.env} if self.env else None,
                preexec_fn=_affinity(self.cpus),
            )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout=20)
        if not line.startswith(b"listening "):
            raise RuntimeError(f"{self.script} did not start: {line!r}; see {self.log}")
        self.port = int(line.split()[1])
        return self

    @property
    def pid(self) -> int:
        """Process id."""
        assert self.proc is not None
        return self.proc.pid

    def ws_url(self) -> str:
        """The Engine.IO WebSocket URL."""
        return f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class LoadGenError(Exception):
    """The load generator failed or broke the protocol."""


class LoadGen:
    """One load generator run: node loadgen.mjs (or the Python fallback) with a spec."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path, kind: str) -> None:
        self.proc = proc
        self.log = log
        self.kind = kind
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def start(
        cls,
        spec: dict[str, Any],
        workdir: Path,
        name: str,
        node: str | None,
        cpus: set[int] | None,
    ) -> LoadGen:
        """Write the spec, start the generator with stdin control."""
        spec = {**spec, "control": True}
        spec_path = workdir / f"{name}.spec.json"
        spec_path.write_text(json.dumps(spec))
        log = workdir / f"{name}.stderr.log"
        if node is not None:
            argv = [node, str(NODE_DIR / "loadgen.mjs"), str(spec_path)]
            kind = "node"
        else:
            argv = [sys.executable, "-m", "bench.pyloadgen", str(spec_path)]
            kind = "python-fallback"
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=LINE_LIMIT,
                preexec_fn=_affinity(cpus),
            )
        return cls(proc, log, kind)

    @property
    def pid(self) -> int:
        """Process id."""
        return self.proc.pid

    async def send(self, cmd: dict[str, Any]) -> None:
        """One command line on stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()

    async def event(self, name: str, timeout: float) -> dict[str, Any]:
        """The next output line whose `event` is `name` (others are kept in `events`)."""
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise LoadGenError(f"no {name!r} from the load generator in {timeout:.0f} s")
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), timeout=left)
            except TimeoutError:
                raise LoadGenError(
                    f"no {name!r} from the load generator in {timeout:.0f} s"
                ) from None
            if not line:
                await self.proc.wait()
                raise LoadGenError(
                    f"load generator exited ({self.proc.returncode}) before {name!r}: "
                    f"{self._tail()}"
                )
            try:
                event: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            if event.get("event") == "error":
                raise LoadGenError(f"load generator error: {event.get('error')}")
            if event.get("event") == name:
                return event

    async def close(self, timeout: float = 30) -> dict[str, Any]:
        """Ask it to close its sockets; its result object."""
        try:
            await self.send({"cmd": "close"})
            return await self.event("result", timeout)
        finally:
            await self.kill()

    async def kill(self) -> None:
        """Make sure it is gone."""
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"
