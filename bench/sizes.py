"""How big and how long each measurement is: the full run and the seconds-long smoke run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """Every size, rate and duration of one benchmark invocation."""

    name: str
    reps: int
    #: Refuse (exclude from medians) a step where the generator used more than this of its
    #: core; None = report only (smoke).
    generator_limit: float | None
    settle_max_s: float
    #: One server per side for all metrics of a repetition instead of a fresh one per
    #: metric (the smoke run: starting a stack takes seconds).
    share_servers: bool
    # calibration against trivial.mjs
    calib_sockets: int
    calib_messages: int
    # metric 1: idle sockets, RSS after GC at each total (the slope is fitted over them)
    idle_points: tuple[int, ...]
    idle_hold_s: float
    # metric 2: fan-out to one room, ramp of messages/s into the room
    fan_members: int
    fan_rates: tuple[float, ...]
    fan_step_s: float
    fan_payload_bytes: int
    fan_drain_ms: int
    fan_spread_p99_ms: float
    # metrics 3 and 4: end to end, two gateways
    e2e_rooms: int
    e2e_rate: float
    e2e_duration_s: float
    e2e_warmup_s: float
    ramp_rates: tuple[float, ...]
    ramp_step_s: float
    ramp_p99_ms: float
    loss_ms: int
    # metric 5: CPU per message with 1 vs 2 gateways and 1 vs 2 messages workers
    scale_rate: float
    scale_duration_s: float
    scale_warmup_s: float
    # metric 6: authenticated connects per second into one gateway (JWT on both sides)
    connect_sockets: int
    # metric 7: reconnect storm: the clients of a SIGTERMed gateway move to the other
    storm_clients: int
    storm_group_size: int
    #: messages sent into each group before the SIGTERM and while the clients reconnect
    storm_before: int
    storm_during: int
    storm_timeout_s: float


FULL = Sizes(
    name="full",
    reps=3,
    generator_limit=0.70,
    settle_max_s=10.0,
    share_servers=False,
    calib_sockets=1_000,
    calib_messages=2_000,
    idle_points=(1_000, 4_000, 7_000, 10_000),
    idle_hold_s=3.0,
    fan_members=1_000,
    fan_rates=(10, 20, 30, 40, 50, 60, 70, 80, 100, 120, 150, 200, 250, 300, 400),
    fan_step_s=3.0,
    fan_payload_bytes=100,
    fan_drain_ms=3_000,
    fan_spread_p99_ms=50.0,
    e2e_rooms=500,
    e2e_rate=1_000,
    e2e_duration_s=15.0,
    e2e_warmup_s=2.0,
    ramp_rates=(1_000, 2_000, 3_000, 5_000, 7_000, 10_000, 14_000, 20_000, 28_000, 40_000),
    ramp_step_s=5.0,
    ramp_p99_ms=50.0,
    loss_ms=5_000,
    # 1,000 msg/s saturates the one core our seven processes share (~1 ms of CPU per
    # message), and a saturated core makes every set-up cost "1 core / rate": measure
    # the overhead below saturation.
    scale_rate=500,
    scale_duration_s=10.0,
    scale_warmup_s=2.0,
    connect_sockets=10_000,
    storm_clients=10_000,
    storm_group_size=20,
    storm_before=2,
    storm_during=2,
    storm_timeout_s=60.0,
)

SMOKE = Sizes(
    name="smoke",
    reps=1,
    generator_limit=None,
    settle_max_s=1.0,
    share_servers=True,
    calib_sockets=50,
    calib_messages=200,
    idle_points=(20, 50, 80),
    idle_hold_s=0.2,
    fan_members=20,
    fan_rates=(20, 50),
    fan_step_s=0.5,
    fan_payload_bytes=100,
    fan_drain_ms=1_000,
    fan_spread_p99_ms=50.0,
    e2e_rooms=10,
    e2e_rate=100,
    e2e_duration_s=1.0,
    e2e_warmup_s=0.3,
    ramp_rates=(100, 200),
    ramp_step_s=0.5,
    ramp_p99_ms=50.0,
    loss_ms=2_000,
    scale_rate=100,
    scale_duration_s=0.7,
    scale_warmup_s=0.2,
    connect_sockets=50,
    storm_clients=40,
    storm_group_size=4,
    storm_before=1,
    storm_during=1,
    storm_timeout_s=20.0,
)
