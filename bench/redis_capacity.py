"""Redis capacity: operations per message and per connect, and what one primary carries.

    .venv/bin/python -m bench.redis_capacity [--messages 500] [--users 50]

1. Runs the real stack (one gateway, the workers, one redis-server) and counts what
   Redis executes (`INFO commandstats`, reset before each step): per `message:send`,
   per socket connect (a user's first socket), per disconnect (grace period included).
   Commands run inside a Lua script are counted as well as the script call itself; a
   "round trip" is a command a client sent.
2. Runs `redis-benchmark` against the same server with the gateway's own scripts (the
   token bucket every client event takes; the presence connect): script calls per second
   one Redis core carries, and from it the message rate one primary carries.

Redis runs one command at a time on one core, so the figure is per primary, whatever the
number of gateways; a replica adds none (it applies the same writes).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import redis

from chat_gateway import redis_scripts
from chat_testkit.client import ChatClient
from chat_testkit.stack import Stack

GRACE_MS = 200
OVERRIDES = {
    "CHAT_RATE_SEND_PER_S": "100000",
    "CHAT_RATE_SEND_BURST": "100000",
    "CHAT_RATE_OTHER_PER_MIN": "10000000",
    "CHAT_RATE_GROUP_CREATE_PER_MIN": "10000000",
    "CHAT_LOG_LEVEL": "WARNING",
    "CHAT_PRESENCE_GRACE_MS": str(GRACE_MS),
}


def _stats(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the last reset (script calls and what they ran)."""
    info: dict[str, Any] = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def _reset(client: redis.Redis) -> None:
    client.config_resetstat()


def _summary(stats: dict[str, int], per: int) -> str:
    stats = {k: v for k, v in stats.items() if k not in ("config|resetstat", "info")}
    scripts = stats.get("evalsha", 0) + stats.get("eval", 0)
    total = sum(stats.values())
    detail = ", ".join(f"{k} {v / per:.2f}" for k, v in sorted(stats.items()))
    return f"{total / per:.2f} commands ({scripts / per:.2f} script calls): {detail}"


async def _measure(stack: Stack, users: int, messages: int) -> dict[str, str]:
    assert stack.redis is not None
    direct = redis.Redis(unix_socket_path=str(stack.redis.socket_path))
    url = stack.gateway_url(0)
    out: dict[str, str] = {}

    _reset(direct)
    clients = []
    for i in range(users):
        client = ChatClient(f"u{i}")
        await client.connect(url, stack.token(f"cap-u{i:03d}"))
        clients.append(client)
    out["connect (first socket of a user)"] = _summary(_stats(direct), users)

    ack = await clients[0].call(
        "group:create", {"name": "cap", "memberIds": [f"cap-u{i:03d}" for i in range(1, users)]}
    )
    group = ack["group"]["id"]
    _reset(direct)
    for n in range(messages):
        sent = await clients[n % users].call(
            "message:send", {"clientMessageId": f"c{n}", "groupId": group, "content": "x"}
        )
        assert sent["status"] == "ok", sent
    out["message:send"] = _summary(_stats(direct), messages)

    _reset(direct)
    for client in clients:
        await client.close()
    # Each user's last socket left: DISCONNECT now, EXPIRE after the grace period.
    await asyncio.sleep(GRACE_MS / 1000 * 3)
    out["disconnect (last socket; grace expiry included)"] = _summary(_stats(direct), users)
    direct.close()
    return out


def _benchmark(socket_path: Path, script: str, keys: str, args: str) -> float:
    """Script calls per second one redis-server carries (redis-benchmark, 50 clients,
    16 pipelined each, 100,000 distinct keys)."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise SystemExit("redis-benchmark is not installed (Debian package redis-tools)")
    sha = hashlib.sha1(script.encode()).hexdigest()
    with redis.Redis(unix_socket_path=str(socket_path)) as client:
        client.script_load(script)
    argv = [binary, "-s", str(socket_path), "-n", "300000", "-c", "50", "-P", "16"]
    argv += ["-r", "100000", "-q", "EVALSHA", sha, *keys.split(), *args.split()]
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    found = re.findall(r"([\d.]+) requests per second", result.stdout.replace("\r", "\n"))
    if not found:
        raise RuntimeError(f"redis-benchmark said: {result.stdout[-500:]} {result.stderr}")
    return float(found[-1])


def main() -> None:
    """Run both measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--messages", type=int, default=500)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="redis-capacity-") as tmp:
        stack = Stack(
            Path(tmp),
            gateways=1,
            workers=("messages", "groups", "users"),
            overrides=OVERRIDES,
        ).start()
        try:
            counts = asyncio.run(_measure(stack, options.users, options.messages))
            assert stack.redis is not None
            bucket = _benchmark(
                stack.redis.socket_path,
                redis_scripts.TOKEN_BUCKET,
                "1 rl:send:__rand_int__",
                "0.001 1000",
            )
            connect = _benchmark(
                stack.redis.socket_path,
                redis_scripts.CONNECT,
                "2 pr:c:__rand_int__ pr:g:__rand_int__",
                "gw-1 30000",
            )
        finally:
            stack.stop()
    print("Redis work per event (counted on the real stack):")
    for what, summary in counts.items():
        print(f"  {what}: {summary}")
    print("One redis-server, the gateway's scripts (redis-benchmark, 50 clients x 16 pipelined):")
    print(f"  token bucket (1 per client event): {bucket:,.0f} calls/s")
    print(f"  presence connect: {connect:,.0f} calls/s")


if __name__ == "__main__":
    main()
