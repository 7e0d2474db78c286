"""The authorisation matrix: every client event of the routes table, tried by someone
who must not do it.

One world (a group with an admin and a plain member, a DM, messages, a pin and a
ringing call), then one row per event: each attempt names the actor (an outsider with
no chat at all, a non-member who has chats but not this one, a plain member where an
admin is needed, a member with someone else's message or call, a blocked user once
blocking is served) and what must come back. After every attempt the stores' tables
are compared with the snapshot taken before it (nothing written), and at the end every
socket of the world is checked to have received nothing but the barrier messages sent
after the last attempt (nothing emitted). An event of the table without a row here
fails `test_every_event_has_a_row`.

Upload ids and media live on the media service's HTTP API (PROTOCOL.md "Uploads"), so
they get a table of their own, `HTTP_MATRIX`: someone else's upload id on every route
that takes one (PUT/HEAD of the uploadUrl, tus HEAD/PATCH) and media of a chat the user
is not in (download, thumbnail, signed link), with the same checks (the store snapshot
and the media files unchanged, nothing emitted).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from chat_contracts import routes
from chat_testkit.client import ChatClient
from chat_testkit.snapshot import changed, snapshot
from chat_testkit.stack import Stack
from tests.integration.calls.conftest import CANDIDATE, OFFER
from tests.integration.conftest import Connect, cmid, make_group
from tests.integration.media_client import MediaUser, jpeg_with_gps, pdf_bytes

#: The events of the table whose refusal only blocking can show, while it is unserved.
BLOCKING_SERVED = routes.USER_BLOCK.served


@dataclass
class World:
    """Who is who, and the ids they own."""

    users: dict[str, str]
    sockets: dict[str, ChatClient]
    group: str
    dm: str
    alice_msg: str
    bob_msg: str
    dm_msg: str
    call: str
    blocked_dm: str | None = None
    #: dave's own message (in its DM with alice, before alice blocked it).
    dave_msg: str = ""
    #: alice's uploads: one open (made right before the requests that use it: sessions
    #: expire after 2 s without bytes in the test stack), one complete and sent to the
    #: group (an image: it has a thumbnail), one complete and sent nowhere.
    open_upload: str = ""
    done_upload: str = ""
    sent_media: str = ""
    unsent_media: str = ""
    #: The media service's base URL; bob's signed link to the group's image.
    media_base: str = ""
    bob_link: str = ""

    def __getitem__(self, name: str) -> str:
        return self.users[name]


Build = Callable[[World], dict[str, Any]]


@dataclass(frozen=True)
class Attempt:
    """One forbidden try: who, the payload, and the code it must get.

    `code` None = the event has no ack (typing, ICE): only silence and an unchanged
    store are checked. `leak` = the ack is `ok` because the event only ever reads the
    actor's own data; the check says what it must not contain.
    """

    who: str
    why: str
    payload: Build
    code: str | None
    leak: Callable[[World, dict[str, Any]], bool] | None = None
    needs_blocking: bool = False
    #: Tables the refusal may write, and why (checked: nothing else changes).
    may_write: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    """An event's attempts; `open_to_all` explains an event nobody can be refused."""

    attempts: tuple[Attempt, ...] = ()
    open_to_all: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _msg(ref: str, **more: Any) -> Build:
    return lambda w: {"messageId": getattr(w, ref), **more}


def _in_group(ref: str, **more: Any) -> Build:
    return lambda w: {"messageId": getattr(w, ref), "groupId": w.group, **more}


def _mentions(w: World, ack: dict[str, Any]) -> bool:
    """Whether an ok ack names anything of the world the actor may not see."""
    text = repr(ack)
    secrets_ = (w.group, w.dm, w.alice_msg, w.bob_msg, w.dm_msg, w.call, "matrix-secret")
    return any(s in text for s in secrets_)


#: Outsider (no chat at all), non-member of the group (has a DM), plain group member.
OUT, NON, MEM = "mallory", "carol", "bob"
FORBIDDEN, NOT_FOUND = "FORBIDDEN", "NOT_FOUND"

MATRIX: dict[str, Row] = {
    "message:send": Row((
        Attempt(OUT, "post to a group", lambda w: {
            "clientMessageId": cmid(), "groupId": w.group, "content": "x"}, FORBIDDEN),
        Attempt(NON, "post to a group", lambda w: {
            "clientMessageId": cmid(), "groupId": w.group, "content": "x"}, FORBIDDEN),
        Attempt(MEM, "post to someone else's DM", lambda w: {
            "clientMessageId": cmid(), "conversationId": w.dm, "content": "x"}, FORBIDDEN),
        Attempt(OUT, "reply to a message of a chat it cannot read (leaks its content)",
                lambda w: {"clientMessageId": cmid(), "targetUserId": w["bob"],
                           "content": "x", "replyToId": w.dm_msg}, NOT_FOUND),
        Attempt("dave", "DM to the user who blocked it", lambda w: {
            "clientMessageId": cmid(), "targetUserId": w["alice"], "content": "x"},
            "BLOCKED", needs_blocking=True),
        Attempt(MEM, "post someone else's upload (sent nowhere yet)", lambda w: {
            "clientMessageId": cmid(), "groupId": w.group, "type": "FILE",
            "mediaUrl": w.unsent_media}, "VALIDATION_ERROR"),
    )),
    "messages:history": Row((
        Attempt(OUT, "read a group", lambda w: {"groupId": w.group}, FORBIDDEN),
        Attempt(MEM, "read someone else's DM", lambda w: {"conversationId": w.dm}, FORBIDDEN),
    )),
    "sync": Row((
        Attempt(OUT, "cursor naming a group", lambda w: {
            "since": [{"groupId": w.group, "seq": 0, "rev": 0}]}, None, leak=_mentions),
        Attempt(OUT, "cursor naming someone else's DM", lambda w: {
            "since": [{"conversationId": w.dm, "seq": 0, "rev": 0}]}, None, leak=_mentions),
    )),
    "message:read": Row((
        Attempt(OUT, "mark a group message read", _in_group("alice_msg"), FORBIDDEN),
        Attempt(MEM, "mark a DM message read", lambda w: {
            "messageId": w.dm_msg, "targetUserId": w["alice"]}, FORBIDDEN),
    )),
    "message:edit": Row((
        Attempt(MEM, "edit someone else's message", _in_group("alice_msg", content="x"),
                FORBIDDEN),
        Attempt(OUT, "edit a group message", _msg("bob_msg", content="x"), FORBIDDEN),
    )),
    "message:delete": Row((
        Attempt(MEM, "delete someone else's message for everyone",
                _in_group("alice_msg", deleteForEveryone=True), FORBIDDEN),
        Attempt(OUT, "delete a message of a chat it is not in, for itself",
                _msg("dm_msg"), FORBIDDEN),
        Attempt(NON, "delete a group message for everyone",
                _msg("bob_msg", deleteForEveryone=True), FORBIDDEN),
    )),
    "message:reaction:add": Row((
        Attempt(OUT, "react in a group", _in_group("alice_msg", emoji="👍"), FORBIDDEN),
        Attempt(MEM, "react in someone else's DM", _msg("dm_msg", emoji="👍"), FORBIDDEN),
    )),
    "message:reaction:remove": Row((
        Attempt(OUT, "remove a reaction in a group", _in_group("alice_msg", emoji="🎉"),
                FORBIDDEN),
        Attempt(MEM, "remove a reaction in someone else's DM", _msg("dm_msg", emoji="🎉"),
                FORBIDDEN),
    )),
    "message:history:edits": Row((
        Attempt(OUT, "read a group message's edits", _msg("alice_msg"), FORBIDDEN),
        Attempt(MEM, "read a DM message's edits", _msg("dm_msg"), FORBIDDEN),
    )),
    "message:pin": Row((
        Attempt(MEM, "pin in a group (admins only)", _in_group("bob_msg"), FORBIDDEN),
        Attempt(OUT, "pin in a DM", _msg("dm_msg"), FORBIDDEN),
    )),
    "message:unpin": Row((
        Attempt(MEM, "unpin in a group (admins only)", _in_group("alice_msg"), FORBIDDEN),
        Attempt(OUT, "unpin in a group", _in_group("alice_msg"), FORBIDDEN),
    )),
    "pins:list": Row((
        Attempt(OUT, "list a group's pins", lambda w: {"groupId": w.group}, FORBIDDEN),
        Attempt(MEM, "list someone else's DM pins", lambda w: {"conversationId": w.dm},
                FORBIDDEN),
    )),
    "message:forward": Row((
        Attempt(OUT, "forward a message it cannot read", lambda w: {
            "messageId": w.dm_msg, "targetUserId": w["bob"]}, FORBIDDEN),
        Attempt(NON, "forward into a group it is not in", lambda w: {
            "messageId": w.dm_msg, "targetGroupId": w.group}, FORBIDDEN),
        Attempt("dave", "forward its own message to the user who blocked it", lambda w: {
            "messageId": w.dave_msg, "targetUserId": w["alice"]}, "BLOCKED",
            needs_blocking=True),
    )),
    "message:broadcast": Row((
        # The ack is ok; each target answers alone (PROTOCOL: "fails alone").
        Attempt(OUT, "broadcast into a group and a DM it is not in", lambda w: {
            "content": "x", "groupIds": [w.group], "conversationIds": [w.dm]},
            "results:FORBIDDEN"),
        Attempt(MEM, "broadcast someone else's upload", lambda w: {
            "content": "x", "type": "FILE", "mediaUrl": w.unsent_media,
            "groupIds": [w.group]}, "results:VALIDATION_ERROR"),
    )),
    "search:messages": Row((
        Attempt(OUT, "search everything", lambda w: {"query": "matrix"}, None, leak=_mentions),
        Attempt(OUT, "search a group", lambda w: {"query": "matrix", "groupId": w.group},
                FORBIDDEN),
        Attempt(MEM, "search someone else's DM", lambda w: {
            "query": "matrix", "conversationId": w.dm}, FORBIDDEN),
    )),
    "conversation:mute": Row((
        Attempt(OUT, "mute a group", lambda w: {"groupId": w.group}, FORBIDDEN),
        Attempt(MEM, "mute someone else's DM", lambda w: {"conversationId": w.dm}, FORBIDDEN),
    )),
    "conversation:unmute": Row((
        Attempt(OUT, "unmute a group", lambda w: {"groupId": w.group}, FORBIDDEN),
        Attempt(MEM, "unmute someone else's DM", lambda w: {"conversationId": w.dm}, FORBIDDEN),
    )),
    "group:create": Row(open_to_all="anyone may create a group (the creator is its admin)"),
    "group:update": Row((
        Attempt(MEM, "rename (admins only)", lambda w: {"groupId": w.group, "name": "x"},
                FORBIDDEN),
        Attempt(OUT, "rename", lambda w: {"groupId": w.group, "name": "x"}, FORBIDDEN),
    )),
    "group:delete": Row((
        Attempt(MEM, "delete (admins only)", lambda w: {"groupId": w.group}, FORBIDDEN),
        Attempt(OUT, "delete", lambda w: {"groupId": w.group}, FORBIDDEN),
    )),
    "group:member:add": Row((
        Attempt(MEM, "add a member (admins only)", lambda w: {
            "groupId": w.group, "userId": w["mallory"]}, FORBIDDEN),
        Attempt(OUT, "add itself", lambda w: {"groupId": w.group, "userId": w["mallory"]},
                FORBIDDEN),
    )),
    "group:member:remove": Row((
        Attempt(MEM, "remove the admin (admins only)", lambda w: {
            "groupId": w.group, "userId": w["alice"]}, FORBIDDEN),
        Attempt(OUT, "remove a member", lambda w: {"groupId": w.group, "userId": w["bob"]},
                FORBIDDEN),
    )),
    "group:member:role": Row((
        Attempt(MEM, "promote itself (admins only)", lambda w: {
            "groupId": w.group, "userId": w["bob"], "role": "ADMIN"}, FORBIDDEN),
        Attempt(OUT, "demote the admin", lambda w: {
            "groupId": w.group, "userId": w["alice"], "role": "MEMBER"}, FORBIDDEN),
    )),
    "groups:list": Row((
        Attempt(OUT, "list groups", lambda w: {}, None, leak=_mentions),
    )),
    "group:get": Row((
        Attempt(OUT, "read a group", lambda w: {"groupId": w.group}, FORBIDDEN),
        Attempt(NON, "read a group", lambda w: {"groupId": w.group}, FORBIDDEN),
    )),
    "status:set": Row(open_to_all="sets the actor's own status only"),
    "user:block": Row(open_to_all="blocks on behalf of the actor only"),
    "user:unblock": Row(open_to_all="unblocks on behalf of the actor only"),
    "notification:register": Row(open_to_all="registers the actor's own device"),
    "notification:unregister": Row((
        Attempt(OUT, "unregister a device id it does not own", lambda w: {
            "deviceId": "matrix-device"}, None, leak=_mentions),
    )),
    "presence:last_seen": Row((
        # main answered strangers too (found by this row); contacts only (PROTOCOL)
        # arrives with the people issue, which also serves blocking.
        Attempt(OUT, "ask for strangers' last seen", lambda w: {
            "userIds": [w["alice"], w["bob"]]}, None,
            leak=lambda w, ack: bool(ack.get("lastSeen")), needs_blocking=True),
    )),
    "call:offer": Row((
        Attempt("dave", "call the user who blocked it", lambda w: {
            "targetUserId": w["alice"], "offer": OFFER, "callType": "audio"},
            "rejected:blocked", needs_blocking=True,
            # The attempt is recorded for the caller's own history (calls README: it is
            # never in the callee's); _try checks alice's history does not show it.
            may_write=("calls.sqlite3:calls",)),
    ), open_to_all="anyone may call anyone who does not block them"),
    "call:answer": Row((
        Attempt(OUT, "answer someone else's call", lambda w: {
            "callId": w.call, "answer": {"type": "answer", "sdp": OFFER["sdp"]}}, FORBIDDEN),
        Attempt(MEM, "answer someone else's call", lambda w: {
            "callId": w.call, "answer": {"type": "answer", "sdp": OFFER["sdp"]}}, FORBIDDEN),
    )),
    "call:ice-candidate": Row((
        Attempt(OUT, "inject a candidate into someone else's call", lambda w: {
            "callId": w.call, "candidate": CANDIDATE}, None),
    )),
    "call:reject": Row((
        Attempt(OUT, "reject someone else's call", lambda w: {"callId": w.call}, FORBIDDEN),
    )),
    "call:end": Row((
        Attempt(MEM, "hang up someone else's call", lambda w: {"callId": w.call}, FORBIDDEN),
    )),
    "calls:history": Row((
        Attempt(OUT, "list calls", lambda w: {}, None, leak=_mentions),
    )),
    "typing:start": Row((
        Attempt(OUT, "type in a group", lambda w: {"groupId": w.group}, None),
        Attempt(MEM, "type in someone else's DM", lambda w: {"conversationId": w.dm}, None),
    )),
    "typing:stop": Row((
        Attempt(OUT, "stop typing in a group", lambda w: {"groupId": w.group}, None),
    )),
    "presence:set": Row(open_to_all="sets the actor's own manual status"),
    "presence:query": Row((
        Attempt(OUT, "page a group's online members", lambda w: {"groupId": w.group},
                FORBIDDEN),
        Attempt(NON, "page a group's online members", lambda w: {"groupId": w.group},
                FORBIDDEN),
    )),
    "presence:subscribe": Row((
        Attempt(OUT, "subscribe to a group's presence", lambda w: {"groupId": w.group},
                FORBIDDEN),
    )),
}  # fmt: skip


@dataclass(frozen=True)
class HttpAttempt:
    """One forbidden request to the media service and the status it must get."""

    who: str
    why: str
    method: str
    url: Callable[[World], str]
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    auth: bool = True


TUS = {"Tus-Resumable": "1.0.0"}
TUS_PATCH = {**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
#: alice's open upload is 1,000 bytes, none of them in yet.
FIRST_HALF = {"Content-Range": "bytes 0-499/1000"}


def _upload(ref: str, tus: bool = False) -> Callable[[World], str]:
    return lambda w: f"{w.media_base}/v1/{'tus' if tus else 'uploads'}/{getattr(w, ref)}"


HTTP_MATRIX: tuple[HttpAttempt, ...] = (
    # Someone else's upload id, on every route that takes one (ids are not confirmed:
    # NOT_FOUND, as for an id that does not exist). The open upload's first.
    HttpAttempt(MEM, "PUT bytes into someone else's open upload", "PUT",
                _upload("open_upload"), 404, FIRST_HALF, b"x" * 500),
    HttpAttempt(OUT, "PUT bytes into someone else's open upload", "PUT",
                _upload("open_upload"), 404, FIRST_HALF, b"x" * 500),
    HttpAttempt(MEM, "HEAD someone else's upload (its progress)", "HEAD",
                _upload("open_upload"), 404),
    HttpAttempt(MEM, "tus HEAD of someone else's upload", "HEAD",
                _upload("open_upload", tus=True), 404, TUS),
    HttpAttempt(MEM, "tus PATCH into someone else's upload", "PATCH",
                _upload("open_upload", tus=True), 404, TUS_PATCH, b"x" * 500),
    HttpAttempt(MEM, "PUT over someone else's complete upload", "PUT",
                _upload("done_upload"), 404, {}, b"x" * 10),
    HttpAttempt(MEM, "HEAD someone else's complete upload", "HEAD",
                _upload("done_upload"), 404),
    # Media of a chat the user is not in, or sent nowhere yet.
    HttpAttempt(NON, "download the image of a group it is not in", "GET",
                lambda w: w.sent_media, 404),
    HttpAttempt(OUT, "download the image of a group it is not in", "GET",
                lambda w: w.sent_media, 404),
    HttpAttempt(OUT, "HEAD the image of a group it is not in", "HEAD",
                lambda w: w.sent_media, 404),
    HttpAttempt(NON, "its thumbnail", "GET", lambda w: f"{w.sent_media}/thumbnail", 404),
    HttpAttempt(NON, "a signed link to it", "GET", lambda w: f"{w.sent_media}/link", 404),
    HttpAttempt(NON, "a member's signed link with its own user id put in", "GET",
                lambda w: w.bob_link.replace(f"u={w['bob']}", f"u={w['carol']}"), 401,
                auth=False),
    HttpAttempt(OUT, "no token at all", "GET", lambda w: w.sent_media, 401, auth=False),
    HttpAttempt(MEM, "download someone else's upload that was sent nowhere", "GET",
                lambda w: w.unsent_media, 404),
)  # fmt: skip


def test_every_event_has_a_row() -> None:
    """A new client event must come with its forbidden attempts (or a reason it has none)."""
    events = {r.event for r in routes.ROUTES}
    assert events - MATRIX.keys() == set(), "events without a row in the authorisation matrix"
    assert MATRIX.keys() - events == set(), "rows for events the table does not have"
    for event, row in MATRIX.items():
        assert row.attempts or row.open_to_all, f"{event}: no attempt and no reason"


async def _world(
    stack: Stack, connect: Connect, uid: Callable[[str], str], http: aiohttp.ClientSession
) -> World:
    names = ("alice", "bob", "carol", "mallory", "dave")
    users = {n: uid(n) for n in names}
    sockets = {
        "alice": await connect(users["alice"], gateway=0, name="Alice"),
        "alice@1": await connect(users["alice"], gateway=1, name="Alice"),
        "bob": await connect(users["bob"], gateway=1),
        "carol": await connect(users["carol"], gateway=0),
        "mallory": await connect(users["mallory"], gateway=1),
        "dave": await connect(users["dave"], gateway=0),
    }
    alice, bob = sockets["alice"], sockets["bob"]
    group = await make_group(alice, users["bob"], name="matrix-secret group")
    await bob.wait_for("group:member:added", lambda e: e["userId"] == users["bob"])

    async def send(client: ChatClient, **target: Any) -> dict[str, Any]:
        payload = {"clientMessageId": cmid(), "content": "matrix-secret words", **target}
        ack = await client.call("message:send", payload)
        assert ack["status"] == "ok", ack
        message: dict[str, Any] = ack["message"]
        return message

    alice_msg = (await send(alice, groupId=group))["id"]
    bob_msg = (await send(bob, groupId=group))["id"]
    dm = await send(alice, targetUserId=users["carol"])
    uploads = await _uploads(stack, http, users, alice, group)
    for event, payload in (
        ("message:pin", {"messageId": alice_msg, "groupId": group}),
        ("message:reaction:add", {"messageId": alice_msg, "emoji": "🎉"}),
        ("message:reaction:add", {"messageId": dm["id"], "emoji": "🎉"}),
    ):
        assert (await alice.call(event, payload))["status"] == "ok"
    blocked_dm, dave_msg = None, ""
    if BLOCKING_SERVED:
        first = await send(sockets["dave"], targetUserId=users["alice"])
        blocked_dm, dave_msg = first["conversationId"], first["id"]
        assert (await alice.call("user:block", {"userId": users["dave"]}))["status"] == "ok"
        await sockets["dave"].wait_for("user:blocked")
    offer = {"targetUserId": users["carol"], "offer": OFFER, "callType": "audio"}
    ack = await alice.call("call:offer", offer)
    assert ack["status"] == "ok", ack
    await sockets["carol"].wait_for("call:incoming")
    world = World(
        users, sockets, group, dm["conversationId"], alice_msg, bob_msg, dm["id"],
        ack["callId"], blocked_dm, dave_msg, **uploads,
    )  # fmt: skip
    # Everything the setup caused has arrived: forget it (the group's creation,
    # messages, pin and reactions reach bob and alice's second socket).
    await bob.wait_for("message:pinned")
    await sockets["alice@1"].wait_for("message:pinned")
    await asyncio.sleep(0.3)
    for socket in sockets.values():
        socket.clear()
    return world


async def _uploads(
    stack: Stack,
    http: aiohttp.ClientSession,
    users: dict[str, str],
    alice: ChatClient,
    group: str,
) -> dict[str, str]:
    """alice's uploads (sent to the group, sent nowhere) and bob's signed link."""
    owner = MediaUser(stack, http, users["alice"])
    image = await owner.upload("photo.jpg", jpeg_with_gps())
    unsent = await owner.upload("plan.pdf", pdf_bytes(5_000))
    payload = {"clientMessageId": cmid(), "groupId": group, "type": "IMAGE"}
    ack = await alice.call("message:send", {**payload, "mediaUrl": image["mediaUrl"]})
    assert ack["status"] == "ok", ack
    bob = MediaUser(stack, http, users["bob"])
    async with http.get(f"{image['mediaUrl']}/link", headers=bob.auth) as resp:
        assert resp.status == 200, await resp.text()
        link: str = (await resp.json())["url"]
    return {
        "done_upload": image["uploadId"],
        "sent_media": image["mediaUrl"],
        "unsent_media": unsent["mediaUrl"],
        "media_base": owner.base,
        "bob_link": link,
    }


def _files(root: Path) -> dict[str, str]:
    """Every media file's path and content digest (what the media service stored)."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


async def _try_http(
    world: World, stack: Stack, http: aiohttp.ClientSession, attempt: HttpAttempt
) -> str | None:
    """Run one request; a description of what went wrong, or None."""
    headers = dict(attempt.headers)
    if attempt.auth:
        headers["Authorization"] = f"Bearer {stack.token(world[attempt.who])}"
    async with http.request(
        attempt.method, attempt.url(world), headers=headers, data=attempt.body
    ) as resp:
        body = await resp.read()
    if resp.status != attempt.status:
        return f"expected {attempt.status}, got {resp.status} {body[:200]!r}"
    return None


async def _try(world: World, event: str, attempt: Attempt) -> str | None:
    """Run one attempt; a description of what went wrong, or None."""
    socket = world.sockets[attempt.who]
    payload = attempt.payload(world)
    route = routes.BY_EVENT[event]
    if not route.ack:
        await socket.emit(event, payload)
        return None
    ack = await socket.call(event, payload)
    if attempt.leak is not None:
        if ack.get("status") != "ok":
            return f"expected an ok ack without foreign data, got {ack}"
        # What the event sends the actor itself (search:results) is read the same way.
        await asyncio.sleep(0.1)
        own = [{"event": k, "data": v} for k, v in socket.events.items() if v]
        socket.clear()
        leaked = attempt.leak(world, ack) or any(attempt.leak(world, e) for e in own)
        return f"leaks: {ack} {own}" if leaked else None
    if attempt.code is not None and attempt.code.startswith("results:"):
        code = attempt.code.removeprefix("results:")
        results = ack.get("results", [])
        targets = len(payload.get("groupIds", [])) + len(payload.get("conversationIds", []))
        bad = [r for r in results if r.get("code") != code or r.get("messageId")]
        ok = ack.get("status") == "ok" and len(results) == targets and not bad
        return None if ok else f"expected every target {code}, got {ack}"
    if attempt.code == "rejected:blocked":
        if ack.get("status") != "ok":
            return f"expected ok then call:rejected blocked, got {ack}"
        rejected = await socket.wait_for("call:rejected", lambda e: e["callId"] == ack["callId"])
        if rejected["reason"] != "blocked":
            return f"rejected as {rejected}"
        history = await world.sockets["alice"].call("calls:history", {})
        seen = ack["callId"] in repr(history)
        return f"the blocked call is in the callee's history: {history}" if seen else None
    if ack.get("status") != "error" or ack.get("code") != attempt.code:
        return f"expected {attempt.code}, got {ack}"
    return None


async def test_every_forbidden_attempt_is_refused_and_changes_nothing(
    stack: Stack, connect: Connect, uid: Callable[[str], str]
) -> None:
    async with aiohttp.ClientSession() as http:
        await _every_attempt(stack, connect, uid, http)


async def _every_attempt(
    stack: Stack, connect: Connect, uid: Callable[[str], str], http: aiohttp.ClientSession
) -> None:
    world = await _world(stack, connect, uid, http)
    data_dir, media_dir = stack.workdir / "data", stack.workdir / "media"
    failures: list[str] = []
    tried = skipped = 0
    for event, row in MATRIX.items():
        unserved = not routes.BY_EVENT[event].served
        if unserved:
            # No handler yet: the gateway refuses at once, for everyone.
            ack = await world.sockets["mallory"].call(event, {})
            if routes.BY_EVENT[event].ack and ack.get("code") != "NOT_IMPLEMENTED":
                failures.append(f"{event} (unserved): expected NOT_IMPLEMENTED, got {ack}")
            continue
        for attempt in row.attempts:
            if attempt.needs_blocking and not BLOCKING_SERVED:
                skipped += 1
                continue
            before = snapshot(data_dir)
            problem = await _try(world, event, attempt)
            written = [t for t in changed(before, snapshot(data_dir)) if t not in attempt.may_write]
            tried += 1
            label = f"{event} by {attempt.who} ({attempt.why})"
            if problem:
                failures.append(f"{label}: {problem}")
            if written:
                failures.append(f"{label}: wrote {written}")
    status, created = await MediaUser(stack, http, world["alice"]).create("open.pdf", 1000)
    assert status == 201, created
    world.open_upload = created["uploadId"]
    for request in HTTP_MATRIX:
        before, files = snapshot(data_dir), _files(media_dir)
        problem = await _try_http(world, stack, http, request)
        written = changed(before, snapshot(data_dir))
        tried += 1
        label = f"{request.method} by {request.who} ({request.why})"
        if problem:
            failures.append(f"{label}: {problem}")
        if written or _files(media_dir) != files:
            failures.append(f"{label}: wrote {written or 'media files'}")
    for name in ("alice", "alice@1"):
        # The open upload expires (alice's own doing); nothing else may have come.
        await world.sockets[name].wait_for(
            "upload:failed", lambda e: e["uploadId"] == world.open_upload
        )
    # Barrier: one message to the group and one to the DM cross every path an event of
    # an attempt could have taken; after them (and a settling window) each socket must
    # hold exactly the barrier's events.
    alice = world.sockets["alice"]
    for target in ({"groupId": world.group}, {"conversationId": world.dm}):
        ack = await alice.call(
            "message:send", {"clientMessageId": cmid(), "content": "barrier", **target}
        )
        assert ack["status"] == "ok", ack
    await world.sockets["bob"].wait_for("message:new")
    await world.sockets["carol"].wait_for("message:new")
    await world.sockets["alice@1"].wait_count("message:new", 2)
    await asyncio.sleep(0.5)
    for name, socket in world.sockets.items():
        stray = {k: v for k, v in socket.events.items() if v}
        if stray:
            failures.append(f"{name} received {stray}")
    await alice.call("call:end", {"callId": world.call})
    print(f"authorisation matrix: {tried} attempts, {skipped} waiting for blocking")
    assert not failures, "\n".join(failures)
    assert tried >= 60 + len(HTTP_MATRIX)
