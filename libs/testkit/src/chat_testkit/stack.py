"""The whole backend as real processes: NATS, Redis, gateways and workers.

`Stack.start()` starts everything at once and waits for each to report ready; tests
talk to the gateways over real Socket.IO. Timings that the protocol fixes at seconds
(presence grace, typing expiry) are configurable and shortened here so the suite stays
fast; the rules themselves are the same code paths.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from chat_contracts.services import BY_NAME, SERVICES, optional_setting
from chat_testkit.servers import NatsServer, RedisServer, ServiceProcess

AUDIENCE = "chat-test"
ISSUER = "chat-test-issuer"
ALLOWED_ORIGIN = "http://allowed.example"


@dataclass
class Stack:
    """Running processes and what a test needs to reach them."""

    workdir: Path
    gateways: int = 2
    #: Every service of `chat_contracts.services` that has its worker yet.
    workers: tuple[str, ...] = field(
        default_factory=lambda: tuple(s.name for s in SERVICES if s.runnable)
    )
    overrides: dict[str, str] = field(default_factory=dict)
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    nats: NatsServer | None = None
    redis: RedisServer | None = None
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment every service of this stack gets."""
        assert self.nats is not None
        assert self.redis is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        env.update(
            CHAT_NATS_URL=self.nats.url,
            CHAT_REDIS_URL=self.redis.url,
            CHAT_STORE="sqlite",
            CHAT_SQLITE_DIR=str(self.workdir / "data"),
            CHAT_JWT_SECRET=self.secret,
            CHAT_JWT_AUDIENCE=AUDIENCE,
            CHAT_JWT_ISSUER=ISSUER,
            CHAT_GATEWAY_PORT="0",
            CHAT_ALLOWED_ORIGINS=ALLOWED_ORIGIN,
            CHAT_LOG_LEVEL="INFO",
            CHAT_OPTIONAL_SERVICES=optional_setting(BY_NAME[w] for w in self.workers),
        )
        env.update(self.overrides)
        env.update(extra)
        return env

    def start(self) -> Stack:
        """Start NATS and Redis, then every service in parallel; wait until all are ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.nats = NatsServer(self.workdir)
        self.redis = RedisServer(self.workdir)
        for service in self.workers:
            self.add(service, service)
        for index in range(self.gateways):
            name = f"gateway-{'abcdefgh'[index]}"
            self.add("gateway", name, CHAT_GATEWAY_ID=name)
        for proc in self.processes.values():
            proc.wait_ready()
        return self

    def add(self, service: str, name: str, **extra: str) -> ServiceProcess:
        """Start one more process (not waited for: call `wait_ready`)."""
        proc = ServiceProcess(service, self.env(**extra), self.workdir, name)
        self.processes[name] = proc
        return proc

    def gateway_url(self, index: int = 0) -> str:
        """Base URL of gateway number `index` (0 = gateway-a)."""
        return self.processes[f"gateway-{'abcdefgh'[index]}"].url

    def token(
        self, user_id: str, name: str | None = None, key: str | None = None, **claims: Any
    ) -> str:
        """A token the stack's gateways accept (override claims to forge bad ones)."""
        now = int(time.time())
        body: dict[str, Any] = {
            "sub": user_id,
            "name": name or user_id.title(),
            "aud": AUDIENCE,
            "iss": ISSUER,
            "iat": now,
            "exp": now + 3600,
        }
        body.update(claims)
        return jwt.encode(body, key or self.secret, algorithm="HS256")

    def stop(self) -> dict[str, int | None]:
        """Stop services (SIGTERM, so they drain), then Redis and NATS; exit statuses."""
        statuses = {name: proc.stop() for name, proc in self.processes.items()}
        for server in (self.redis, self.nats):
            if server is not None:
                server.stop()
        return statuses

    def logs(self) -> str:
        """The end of every service log (printed when a test fails)."""
        return "\n".join(f"--- {n}\n{p.tail()}" for n, p in self.processes.items())
