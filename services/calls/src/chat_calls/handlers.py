"""One handler per `cmd.calls.<action>`: decode → check → transition in Redis → record → publish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import msgspec

from chat_calls import domain, sdp
from chat_calls.domain import Call, Phase, Timing
from chat_calls.state import CallState
from chat_calls.store import CallStore
from chat_calls.turn import IceConfig
from chat_contracts import DomainError, ErrorCode, RetryableError, routes, subjects
from chat_contracts import client as c
from chat_contracts import server as o
from chat_contracts.bus import (
    Actor,
    BlockQuery,
    BlockState,
    CallPush,
    Command,
    Devices,
    DevicesQuery,
)
from chat_runtime.bus import Bus, Publisher, encode
from chat_runtime.clock import Clock, IdGenerator
from chat_runtime.jetstream import publish_durably
from chat_runtime.worker import Router

log = logging.getLogger(__name__)

DOMAIN = subjects.CALLS
#: Users-service queries (block state, devices) answer in ~1 ms; 2 s is an outage.
QUERY_TIMEOUT_MS = 2_000

T = TypeVar("T")
_json = msgspec.json.Encoder()
_offer = msgspec.json.Decoder(dict[str, Any])


class CallHandlers:
    """The calls worker's commands and the sweeper's transitions."""

    def __init__(
        self,
        *,
        state: CallState,
        store: CallStore,
        bus: Bus,
        ice: IceConfig,
        clock: Clock,
        ids: IdGenerator,
        push_storage: str = "file",
    ) -> None:
        self._state = state
        self._push_storage = push_storage
        self._store = store
        self._bus = bus
        self._publisher = Publisher(bus)
        self._ice = ice
        self._clock = clock
        self._ids = ids
        self._later: set[asyncio.Task[None]] = set()

    @property
    def timing(self) -> Timing:
        """The time rules in force."""
        return self._state.timing

    def router(self) -> Router:
        """The command table."""
        router = Router(DOMAIN)
        router.route(routes.CALL_OFFER, self.offer)
        router.route(routes.CALL_ANSWER, self.answer)
        router.route(routes.CALL_ICE_CANDIDATE, self.ice)
        router.route(routes.CALL_REJECT, self.reject)
        router.route(routes.CALL_END, self.end)
        router.route(routes.CALLS_HISTORY, self.history)
        return router

    def now_ms(self) -> int:
        """The injected clock in ms since the epoch."""
        return int(self._clock.now().timestamp() * 1000)

    # --- commands ------------------------------------------------------------------------

    async def offer(self, command: Command[c.CallOffer]) -> o.CallOfferResult:
        """`call:offer`: refuse at once (`call:rejected`), or ring every callee socket
        (or its push devices)."""
        actor, p = command.actor, command.payload
        domain.check_target(actor.user_id, p.target_user_id)
        if p.offer.type != "offer":
            raise DomainError(
                ErrorCode.VALIDATION_ERROR, "`offer.type` must be 'offer'", field="offer.type"
            )
        sdp.check_sdp(p.offer.sdp, "offer.sdp")
        callee = p.target_user_id
        blocked = await self._blocked(actor, callee)
        online = (await self._state.connected([callee]))[callee]
        devices = 0 if online or blocked else await self._devices(actor, callee)
        now = self.now_ms()
        call = Call(
            id=self._ids.new("call_"),
            caller_id=actor.user_id,
            callee_id=callee,
            caller_name=actor.name,
            caller_avatar=actor.avatar,
            call_type=p.call_type,
            created_ms=now,
            caller_sid=command.origin_sid,
            delivered=online,
        )

        def decide(caller_busy: bool, callee_busy: bool) -> Call:
            reason = domain.refusal(
                blocked=blocked,
                caller_busy=caller_busy,
                callee_busy=callee_busy,
                callee_online=online,
                callee_devices=devices,
            )
            return call if reason is None else domain.refused(call, reason, now)

        offer = msgspec.to_builtins(p.offer)
        stored = await self._state.create(call, decide, _json.encode(offer))
        result = o.CallOfferResult(call_id=call.id, ice_servers=self._servers(actor.user_id))
        if stored.phase is Phase.ENDED:
            await self._store.save(domain.record(stored))
            # After the ack (published first by the runner): the caller knows the callId.
            self._after_reply(self._notify(domain.ending_notices(stored)))
        elif online:
            await self._ring(stored, offer)
        else:
            push = CallPush(
                call_id=call.id,
                callee_id=callee,
                caller_id=actor.user_id,
                caller_name=actor.name,
                call_type=p.call_type,
            )
            # After the reply: the caller's ack does not wait for the stream's PubAck.
            self._after_reply(self._push(push))
        return result

    async def answer(self, command: Command[c.CallAnswer]) -> o.Empty:
        """`call:answer`: the first answer wins; a later one is CONFLICT."""
        p = command.payload
        if p.answer.type != "answer":
            raise DomainError(
                ErrorCode.VALIDATION_ERROR, "`answer.type` must be 'answer'", field="answer.type"
            )
        sdp.check_sdp(p.answer.sdp, "answer.sdp")
        now = self.now_ms()
        uid, sid = command.actor.user_id, command.origin_sid
        _, after = await self._state.change(
            p.call_id, lambda call: domain.answer(call, uid, sid, now)
        )
        assert after is not None
        await self._notify(domain.answer_notices(after, msgspec.to_builtins(p.answer)))
        return o.Empty()

    async def ice(self, command: Command[c.CallIce]) -> None:
        """`call:ice-candidate` (no ack): relayed to the other party's signaling sockets."""
        p = command.payload
        sdp.check_candidate(p.candidate.candidate, "candidate.candidate")
        call = await self._state.get(p.call_id)
        if call is None:
            raise DomainError(ErrorCode.NOT_FOUND, "no such call", field="callId")
        target = domain.ice_target(call, command.actor.user_id, command.origin_sid)
        if target is None:
            return
        event = o.CallIceEvent(
            call_id=call.id,
            candidate=msgspec.to_builtins(p.candidate),
            from_user_id=command.actor.user_id,
        )
        await self._notify(
            [domain.Notice(target.user_id, "call:ice-candidate", event, target.to_sid)]
        )

    async def reject(self, command: Command[c.CallRef]) -> o.Empty:
        """`call:reject`: the callee declines a ringing call."""
        now, uid = self.now_ms(), command.actor.user_id
        _, after = await self._state.change(
            command.payload.call_id, lambda call: domain.reject(call, uid, now)
        )
        assert after is not None
        await self._settle(after, command.origin_sid)
        return o.Empty()

    async def end(self, command: Command[c.CallRef]) -> o.Empty:
        """`call:end`: either party hangs up; ending an ended call is a no-op."""
        now, uid = self.now_ms(), command.actor.user_id
        _, after = await self._state.change(
            command.payload.call_id, lambda call: domain.end(call, uid, now)
        )
        if after is not None:
            await self._settle(after, command.origin_sid)
        return o.Empty()

    async def history(self, command: Command[c.CallsHistory]) -> o.CallsHistoryResult:
        """`calls:history`: newest first, `cursor` = the last call id of the previous page."""
        p = command.payload
        calls, more = await self._store.history(command.actor.user_id, p.cursor, p.limit)
        return o.CallsHistoryResult(
            calls=calls, has_more=more, cursor=calls[-1].call_id if more and calls else None
        )

    # --- time ------------------------------------------------------------------------------

    async def tick(self, call_id: str, online: dict[str, bool]) -> Call | None:
        """Apply the time rules to one call (sweeper); the changed call, if it changed."""
        now = self.now_ms()

        def rule(call: Call) -> Call:
            seen = {uid: online[uid] for uid in domain.watched(call) if uid in online}
            return domain.tick(call, now, seen, self.timing)

        try:
            before, after = await self._state.change(call_id, rule)
        except DomainError:
            return None  # ended and expired meanwhile
        if after is None:
            return None
        if after.phase is Phase.ENDED:
            await self._settle(after)
        elif not before.delivered and after.delivered:
            # A callee rung by push just connected.
            raw = await self._state.offer(call_id)
            if raw is not None:
                await self._ring(after, _offer.decode(raw))
        return after

    # --- helpers ---------------------------------------------------------------------------

    def _servers(self, user_id: str) -> list[o.IceServer]:
        return self._ice.servers(user_id, self.now_ms() // 1000)

    async def _ring(self, call: Call, offer: dict[str, Any]) -> None:
        incoming = domain.incoming(call, offer, self._servers(call.callee_id))
        await self._publisher.to_user(call.callee_id, "call:incoming", incoming)

    async def _settle(self, call: Call, origin_sid: str | None = None) -> None:
        """An ended call: its record is stored, then both parties are told."""
        await self._store.save(domain.record(call))
        await self._notify(domain.ending_notices(call, origin_sid))

    async def _notify(self, notices: list[domain.Notice]) -> None:
        for n in notices:
            if n.to_sid is not None:
                await self._publisher.to_socket(n.user_id, n.to_sid, n.event, n.payload)
            else:
                await self._publisher.to_user(n.user_id, n.event, n.payload, skip_sid=n.skip_sid)

    async def idle(self) -> None:
        """Wait for the notices scheduled after replies (tests, shutdown)."""
        while self._later:
            await asyncio.gather(*self._later, return_exceptions=True)

    async def _push(self, push: CallPush) -> None:
        """Ring an offline callee's devices through the push stream, stored durably: a
        plain publish is lost without a word if nats-server restarts before the
        notifications worker reads it. Retried (same id, stored once) for as long as
        the call may ring; a push after that would ring for a call that is over."""
        stored = await publish_durably(
            self._bus,
            subjects.CALL_PUSH,
            encode(push),
            f"{push.call_id}:ring",
            storage=self._push_storage,
            give_up_after_s=self.timing.ring_ms / 1000,
        )
        if not stored:
            log.error("call %s: the push stream took no ring push", push.call_id)

    def _after_reply(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _query(
        self, actor: Actor, action: str, payload: msgspec.Struct, result: type[T]
    ) -> T | None:
        """Ask the users service; None when it does not serve `action` (a users version
        without that feature keeps no such data: no blocks, no devices). No answer in
        time is a retry for the caller (never "not blocked" by default)."""
        try:
            return await self._bus.query(
                subjects.command(subjects.USERS, action),
                payload,
                result,
                actor=actor,
                timeout_ms=QUERY_TIMEOUT_MS,
            )
        except DomainError as exc:
            if exc.code is ErrorCode.NOT_IMPLEMENTED:
                return None
            raise RetryableError(
                ErrorCode.UNAVAILABLE, f"users service: {exc.message}", retry_after_ms=1_000
            ) from exc

    async def _blocked(self, actor: Actor, callee: str) -> bool:
        query = BlockQuery(user_id=actor.user_id, other_user_id=callee)
        state = await self._query(actor, "block_state", query, BlockState)
        return state is not None and state.blocked

    async def _devices(self, actor: Actor, callee: str) -> int:
        devices = await self._query(actor, "devices", DevicesQuery(user_id=callee), Devices)
        return 0 if devices is None else devices.count
