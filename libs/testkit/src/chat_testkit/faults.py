"""Faults a reliability test injects into a running `Stack`: SIGKILL a process, start a
service again, restart nats-server or redis-server on the same address, hold the SQLite
write lock of a store."""

from __future__ import annotations

import contextlib
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from chat_testkit.servers import NatsServer, RedisServer, ServiceProcess, _Process, _wait
from chat_testkit.stack import Stack


def sigkill(proc: _Process) -> None:
    """A crash: SIGKILL, reaped."""
    proc.kill()


def sigterm(proc: _Process) -> None:
    """Ask a process to drain and exit; not waited for."""
    if proc.proc.poll() is None:
        proc.proc.send_signal(signal.SIGTERM)


def respawn(stack: Stack, name: str, service: str, **extra: str) -> ServiceProcess:
    """Start `service` again as `name` (a new log, `<name>.log` overwritten), ready."""
    if service == "gateway":
        extra.setdefault("CHAT_GATEWAY_ID", name)
    proc = stack.add(service, name, None, **extra)
    proc.wait_ready()
    return proc


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def restart_nats(server: NatsServer, kill: bool = True) -> None:
    """nats-server down (SIGKILL, or SIGTERM) and up again on the same port, same options."""
    port = int(server.url.rsplit(":", 1)[1])
    argv = [str(a) for a in server.proc.args]  # type: ignore[union-attr]
    argv[argv.index("-p") + 1] = str(port)
    if kill:
        server.kill()
    else:
        server.stop()
    server._spawn(argv, server.log)
    _wait(lambda: _port_open(port), "nats-server (restarted)", server.proc, server.log)


def restart_redis(server: RedisServer) -> None:
    """redis-server SIGKILLed and started again on the same unix socket (empty: the
    test servers keep no data on disk, like a Redis that lost its memory)."""
    argv = [str(a) for a in server.proc.args]  # type: ignore[union-attr]
    server.kill()
    server.socket_path.unlink(missing_ok=True)
    server._spawn(argv, server.log)
    _wait(server._answers, "redis-server (restarted)", server.proc, server.log)


@contextlib.contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    """Hold an exclusive transaction on a SQLite file for the block: every writer of the
    store waits (the store is unavailable for writes) until the block ends."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def hold_lock_for(path: Path, seconds: float) -> threading.Thread:
    """`sqlite_locked` for `seconds` on a thread of its own (started; join it)."""

    taken = threading.Event()

    def hold() -> None:
        with sqlite_locked(path):
            taken.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold, name="sqlite-lock", daemon=True)
    thread.start()
    if not taken.wait(10):
        raise TimeoutError(f"could not lock {path}")
    return thread
