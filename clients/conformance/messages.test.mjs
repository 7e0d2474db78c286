// Sending, history, reads, typing and catch-up between users on two gateways.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ISO_MS, MESSAGE_KEYS, assertKeys, ack, cfg, connect, count, dm, next, ok, randomUUID, refusedWith, send, uid } from "./lib.mjs";

test("message:send by targetUserId reaches the peer on the other gateway as message:new", async () => {
  const { alice, bob, a, conversationId, first } = await dm();
  assertKeys(first, MESSAGE_KEYS.required, MESSAGE_KEYS.optional, "SocketMessage");
  assert.match(first.createdAt, ISO_MS);
  assert.equal(first.senderId, a);
  assert.equal(first.senderName, "Alice");
  assert.ok(conversationId);
  const again = await send(alice, { conversationId }, "second");
  const got = await next(bob, "message:new", (m) => m.id === again.id);
  assert.deepEqual(got, again);
  assert.equal(got.seq, first.seq + 1);
  assert.equal(got.isEdited, false);
  assert.equal(got.isDeleted, false);
  assert.deepEqual(got.reactions, []);
});

test("the sender's other socket gets the message it sent; resending a clientMessageId returns the first and emits nothing", async () => {
  const a = uid("alice");
  const b = uid("bob");
  const alice = await connect(a);
  const aliceTab = await connect(a, { gateway: 1 });
  const bob = await connect(b, { gateway: 1 });
  const clientMessageId = randomUUID();
  const payload = { clientMessageId, targetUserId: b, type: "TEXT", content: "once" };
  const first = await ok(alice, "message:send", payload);
  await next(aliceTab, "message:new", (m) => m.id === first.message.id);
  await next(bob, "message:new", (m) => m.id === first.message.id);
  const second = await ok(alice, "message:send", { ...payload, retryCount: 1 });
  assert.equal(second.retryCount, 1);
  assert.deepEqual(second.message, first.message);
  // A later message arrives; the duplicate never did.
  const later = await send(alice, { targetUserId: b }, "later");
  await next(bob, "message:new", (m) => m.id === later.id);
  assert.equal(count(bob, "message:new", (m) => m.clientMessageId === clientMessageId), 0);
});

test("reply carries the quoted message (replyTo)", async () => {
  const { alice, bob, b, conversationId, first } = await dm();
  const reply = await send(bob, { conversationId }, "re", { replyToId: first.id });
  assertKeys(reply.replyTo, ["messageId", "content", "senderId", "senderName"], ["isDeleted"], "replyTo");
  assert.deepEqual(
    { messageId: reply.replyTo.messageId, content: reply.replyTo.content, senderName: reply.replyTo.senderName },
    { messageId: first.id, content: "hello", senderName: "Alice" },
  );
  assert.equal(reply.senderId, b);
  const seen = await next(alice, "message:new", (m) => m.id === reply.id);
  assert.equal(seen.replyTo.messageId, first.id);
});

test("messages:history pages newest first with beforeSeq and hasMore", async () => {
  const { alice, bob, conversationId } = await dm();
  for (let i = 0; i < 5; i++) await send(alice, { conversationId }, `m${i}`);
  const page = await ok(bob, "messages:history", { conversationId, limit: 4 });
  assert.deepEqual(page.messages.map((m) => m.content), ["m4", "m3", "m2", "m1"]);
  assert.equal(page.hasMore, true);
  const rest = await ok(bob, "messages:history", { conversationId, limit: 4, beforeSeq: page.messages[3].seq });
  assert.deepEqual(rest.messages.map((m) => m.content), ["m0", "hello"]);
  assert.equal(rest.hasMore, false);
  for (const m of rest.messages) assertKeys(m, MESSAGE_KEYS.required, MESSAGE_KEYS.optional);
});

test("message:read in bulk: one event per chat to the other member and the reader's other sockets; unread in sync", async () => {
  const { a, b, alice, bob, conversationId, first } = await dm();
  const second = await send(alice, { conversationId }, "two");
  await next(bob, "message:new", (m) => m.id === second.id);
  let chats = (await ok(bob, "sync", {})).chats;
  assert.equal(chats.find((c) => c.conversationId === conversationId).unread, 2);
  const bobTab = await connect(b, { gateway: 0 });
  const read = await ok(bob, "message:read", { messageIds: [first.id, second.id], targetUserId: a });
  assert.equal(typeof read.count, "number");
  for (const socket of [alice, bobTab]) {
    const event = await next(socket, "message:read");
    assertKeys(event, ["messageIds", "readBy", "readAt"], ["conversationId", "groupId"], "message:read");
    assert.deepEqual([...event.messageIds].sort(), [first.id, second.id].sort());
    assert.equal(event.readBy, b);
    assert.match(event.readAt, ISO_MS);
  }
  chats = (await ok(bob, "sync", {})).chats;
  assert.equal(chats.find((c) => c.conversationId === conversationId).unread, 0);
  // The old single form still works.
  const third = await send(alice, { conversationId }, "three");
  await ok(bob, "message:read", { messageId: third.id, targetUserId: a });
  const single = await next(alice, "message:read", (e) => e.messageIds.includes(third.id));
  assert.equal(single.readBy, b);
});

test("typing:start/stop relay with userName across gateways; an unrenewed start expires", async () => {
  const { a, alice, bob, conversationId } = await dm();
  alice.emit("typing:start", { conversationId });
  const start = await next(bob, "typing:start");
  assertKeys(start, ["userId", "userName"], ["userAvatar", "conversationId", "groupId"], "typing:start");
  assert.equal(start.userId, a);
  assert.equal(start.userName, "Alice");
  alice.emit("typing:stop", { conversationId });
  const stop = await next(bob, "typing:stop");
  assert.equal(stop.userId, a);
  const t0 = Date.now();
  alice.emit("typing:start", { conversationId });
  await next(bob, "typing:start");
  const expired = await next(bob, "typing:stop", () => true, cfg.typingExpiryMs + 5000);
  assert.equal(expired.userId, a);
  assert.ok(Date.now() - t0 >= cfg.typingExpiryMs - 200, "expired too early");
});

test("sync after a reconnect: missed messages in message:batch in seq order, changes by rev", async () => {
  const { b, alice, bob, conversationId, first } = await dm();
  const before = (await ok(bob, "sync", {})).chats.find((c) => c.conversationId === conversationId);
  assertKeys(before, ["lastSeq", "lastRev", "unread"], ["conversationId", "groupId", "mutedUntil"], "sync chat");
  bob.disconnect();
  const missed = [];
  for (let i = 0; i < 3; i++) missed.push(await send(alice, { conversationId }, `while away ${i}`));
  const back = await connect(b, { gateway: 0 });
  const answer = await ok(back, "sync", { since: [{ conversationId, seq: before.lastSeq, rev: before.lastRev }] });
  const chat = answer.chats.find((c) => c.conversationId === conversationId);
  assert.equal(chat.lastSeq, missed[2].seq);
  const batch = await next(back, "message:batch", (p) => p.conversationId === conversationId);
  assertKeys(batch, ["messages"], ["conversationId", "groupId", "limited"], "message:batch");
  assert.deepEqual(batch.messages.map((m) => m.id), missed.map((m) => m.id));
  assert.ok(batch.messages.every((m, i) => i === 0 || m.seq > batch.messages[i - 1].seq));
  assert.ok(first.seq < batch.messages[0].seq);
});

test("socket.io-client reconnects by itself after the transport drops, then catches up with sync", async () => {
  const { b, alice, conversationId } = await dm();
  const bob = await connect(b, { gateway: 1, reconnection: true });
  const cursor = (await ok(bob, "sync", {})).chats.find((c) => c.conversationId === conversationId);
  const reconnected = new Promise((resolve) => bob.io.once("reconnect", resolve));
  bob.io.engine.close(); // the network drops; not a deliberate disconnect
  const missed = await send(alice, { conversationId }, "during the drop");
  await reconnected;
  await ok(bob, "sync", { since: [{ conversationId, seq: cursor.lastSeq, rev: cursor.lastRev }] });
  // The first `sync` (no cursor) sent what bob had; this one sends only the missed one.
  const batch = await next(bob, "message:batch", (p) => p.conversationId === conversationId && p.messages[0].seq > cursor.lastSeq);
  assert.deepEqual(batch.messages.map((m) => m.id), [missed.id]);
});

test("WebSocket and long-polling clients talk to each other", async () => {
  const a = uid("poller");
  const b = uid("socket");
  const poller = await connect(a, { gateway: 0, transports: ["polling"] });
  const sock = await connect(b, { gateway: 1 });
  assert.equal(poller.io.engine.transport.name, "polling");
  const m = await send(poller, { targetUserId: b }, "over polling");
  await next(sock, "message:new", (x) => x.id === m.id);
  const r = await send(sock, { conversationId: m.conversationId }, "over websocket");
  await next(poller, "message:new", (x) => x.id === r.id);
});

test("refusals: VALIDATION_ERROR names the field, FORBIDDEN and NOT_FOUND; the socket keeps working", async () => {
  const { alice, b, conversationId } = await dm();
  const tooLong = await refusedWith(alice, "message:send", { clientMessageId: randomUUID(), conversationId, type: "TEXT", content: "x".repeat(5001) }, "VALIDATION_ERROR");
  assert.match(tooLong.error, /content/);
  const twoTargets = await refusedWith(alice, "message:send", { clientMessageId: randomUUID(), conversationId, targetUserId: b, type: "TEXT", content: "x" }, "VALIDATION_ERROR");
  assert.match(twoTargets.error, /conversationId|targetUserId|groupId/);
  const wrongType = await refusedWith(alice, "messages:history", { conversationId, limit: "ten" }, "VALIDATION_ERROR");
  assert.match(wrongType.error, /limit/);
  const badId = await refusedWith(alice, "message:send", { clientMessageId: "a.b>", conversationId, type: "TEXT", content: "x" }, "VALIDATION_ERROR");
  assert.match(badId.error, /clientMessageId/);
  await refusedWith(alice, "no:such:event", {}, "VALIDATION_ERROR");
  await refusedWith(alice, "message:send", { clientMessageId: randomUUID(), conversationId, type: "TEXT", content: "x", replyToId: "nope" }, "NOT_FOUND");
  const stranger = await connect(uid("eve"));
  await refusedWith(stranger, "messages:history", { conversationId }, "FORBIDDEN");
  await refusedWith(stranger, "message:send", { clientMessageId: randomUUID(), groupId: "g_doesnotexist", type: "TEXT", content: "x" }, "NOT_FOUND");
  await ok(alice, "messages:history", { conversationId });
});

test("an ack always comes, even for a payload that is not an object", async () => {
  const alice = await connect(uid("alice"));
  const answer = await ack(alice, "message:send", "just a string");
  assert.equal(answer.status, "error");
  assert.equal(answer.code, "VALIDATION_ERROR");
});
