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
from chat_testkit.cluster import NatsCluster
from chat_testkit.sentinel import MASTER, RedisSentinelSet
from chat_testkit.servers import NatsServer, RedisServer, ServiceProcess, nats_with_users

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
    #: 1: one nats-server (the default). More: a `NatsCluster` of that many nodes, and
    #: each process is pinned to one node (round robin, or `add(..., node=i)`), with
    #: the other nodes after it in its `CHAT_NATS_URL` to fail over to.
    nats_nodes: int = 1
    cluster: NatsCluster | None = None
    #: The NATS node each process was started on (0 with a single server).
    node_of: dict[str, int] = field(default_factory=dict)
    #: True: Redis is a primary, a replica and three sentinels (`RedisSentinelSet`), and
    #: every process finds the primary through the sentinels.
    redis_sentinel: bool = False
    sentinel: RedisSentinelSet | None = None
    #: user -> password: NATS enforces the per-service users and each process logs in
    #: as its own (None: an open NATS, as in development).
    nats_passwords: dict[str, str] | None = None

    def nats_url(self, node: int = 0) -> str:
        """`CHAT_NATS_URL` for a process on `node`."""
        if self.cluster is not None:
            return self.cluster.urls_from(node)
        assert self.nats is not None
        return self.nats.url

    def env(self, node: int = 0, **extra: str) -> dict[str, str]:
        """The environment every service of this stack gets (attached to `node`)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        if self.sentinel is not None:
            env.update(
                # Only its options count (database 0); the address comes from the sentinels.
                CHAT_REDIS_URL=f"redis://127.0.0.1:{self.sentinel.primary.port}/0",
                CHAT_REDIS_SENTINELS=self.sentinel.addresses,
                CHAT_REDIS_SENTINEL_MASTER=MASTER,
            )
        else:
            assert self.redis is not None
            env.update(CHAT_REDIS_URL=self.redis.url)
        env.update(
            CHAT_NATS_URL=self.nats_url(node),
            # Listed order, so that a process stays on its node until that node dies.
            CHAT_NATS_RANDOMIZE="false",
            CHAT_STORE="sqlite",
            CHAT_SQLITE_DIR=str(self.workdir / "data"),
            CHAT_JWT_SECRET=self.secret,
            CHAT_JWT_AUDIENCE=AUDIENCE,
            CHAT_JWT_ISSUER=ISSUER,
            CHAT_GATEWAY_PORT="0",
            CHAT_ALLOWED_ORIGINS=ALLOWED_ORIGIN,
            CHAT_LOG_LEVEL="INFO",
            CHAT_OPTIONAL_SERVICES=optional_setting(BY_NAME[w] for w in self.workers),
            CHAT_MEDIA_PORT="0",
            CHAT_MEDIA_DIR=str(self.workdir / "media"),
        )
        env.update(self.overrides)
        env.update(extra)
        return env

    def start(self) -> Stack:
        """Start NATS and Redis, then every service in parallel; wait until all are ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.nats_nodes > 1:
            self.cluster = NatsCluster(self.workdir / "nats", self.nats_nodes)
        elif self.nats_passwords is None:
            self.nats = NatsServer(self.workdir)
        else:
            self.nats = nats_with_users(self.workdir, self.nats_passwords)
        if self.redis_sentinel:
            self.sentinel = RedisSentinelSet(self.workdir / "redis")
        else:
            self.redis = RedisServer(self.workdir)
        for service in self.workers:
            self.add(service, service)
        for index in range(self.gateways):
            name = f"gateway-{'abcdefgh'[index]}"
            self.add("gateway", name, node=index % self.nats_nodes, CHAT_GATEWAY_ID=name)
        for proc in self.processes.values():
            proc.wait_ready()
        return self

    def add(self, service: str, name: str, node: int | None = None, **extra: str) -> ServiceProcess:
        """Start one more process (not waited for: call `wait_ready`), on NATS node
        `node` (by default the next one round robin)."""
        if node is None:
            node = len(self.processes) % self.nats_nodes
        if self.nats_passwords is not None:
            password = self.nats_passwords[service]
            extra = {"CHAT_NATS_USER": service, "CHAT_NATS_PASSWORD": password, **extra}
        proc = ServiceProcess(service, self.env(node, **extra), self.workdir, name)
        self.processes[name] = proc
        self.node_of[name] = node
        return proc

    def gateway_url(self, index: int = 0) -> str:
        """Base URL of gateway number `index` (0 = gateway-a)."""
        return self.processes[f"gateway-{'abcdefgh'[index]}"].url

    def media_url(self) -> str:
        """Base URL of the media service."""
        return self.processes["media"].url

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
        for server in (self.redis, self.sentinel, self.nats, self.cluster):
            if server is not None:
                server.stop()
        return statuses

    def logs(self) -> str:
        """The end of every service log (printed when a test fails)."""
        services = "\n".join(f"--- {n}\n{p.tail()}" for n, p in self.processes.items())
        servers = [s.logs() for s in (self.cluster, self.sentinel) if s is not None]
        return "\n".join([services, *servers])
