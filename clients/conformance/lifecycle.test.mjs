// The message lifecycle of frontend-requests.md: edit, delete, reactions, pins, forward,
// broadcast, search, mute. Each test first checks whether this version serves the event
// (the AsyncAPI document's x-served): if not, the gateway must answer NOT_IMPLEMENTED.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ISO_MS, MESSAGE_KEYS, assertKeys, cfg, connect, count, dm, next, notServedYet, ok, randomUUID, refusedWith, send, token, uid } from "./lib.mjs";

const CHAT = ["conversationId", "groupId"];

test("message:edit → message:edited to the peer, isEdited in history, message:history:edits", async (t) => {
  const { a, alice, bob, conversationId, first } = await dm();
  if (await notServedYet(t, alice, "message:edit", { messageId: first.id, content: "x", conversationId })) return;
  const edited = await ok(alice, "message:edit", { messageId: first.id, content: "hello, edited", conversationId });
  assert.equal(edited.message.isEdited, true);
  assert.match(edited.message.editedAt, ISO_MS);
  const event = await next(bob, "message:edited", (e) => e.messageId === first.id);
  assertKeys(event, ["messageId", "content", "editedAt"], CHAT, "message:edited");
  assert.equal(event.content, "hello, edited");
  const history = await ok(bob, "messages:history", { conversationId });
  assert.equal(history.messages.find((m) => m.id === first.id).isEdited, true);
  if (await notServedYet(t, bob, "message:history:edits", { messageId: first.id })) return;
  const edits = await ok(bob, "message:history:edits", { messageId: first.id });
  assert.ok(edits.edits.some((e) => e.content === "hello"));
  for (const e of edits.edits) assertKeys(e, ["content", "editedAt"], [], "edit");
  await refusedWith(bob, "message:edit", { messageId: first.id, content: "not mine", conversationId }, "FORBIDDEN");
  void a;
});

test("message:delete for everyone leaves a tombstone; for me reaches only my own sockets; CONFLICT on a tombstone", async (t) => {
  const { a, b, alice, bob, conversationId, first } = await dm();
  if (await notServedYet(t, alice, "message:delete", { messageId: first.id, conversationId })) return;
  const bobTab = await connect(b);
  const mine = await send(alice, { conversationId }, "for me only");
  await next(bob, "message:new", (m) => m.id === mine.id);
  await ok(bob, "message:delete", { messageId: mine.id, conversationId, deleteForEveryone: false });
  const forMe = await next(bobTab, "message:deleted", (e) => e.messageId === mine.id);
  assertKeys(forMe, ["messageId", "deletedBy", "deletedAt", "deleteForEveryone"], CHAT, "message:deleted");
  assert.equal(forMe.deleteForEveryone, false);
  const hidden = await ok(bob, "messages:history", { conversationId });
  assert.ok(!hidden.messages.some((m) => m.id === mine.id));
  await ok(alice, "message:delete", { messageId: first.id, conversationId, deleteForEveryone: true });
  const gone = await next(bob, "message:deleted", (e) => e.messageId === first.id);
  assert.equal(gone.deleteForEveryone, true);
  assert.equal(gone.deletedBy, a);
  const tomb = (await ok(bob, "messages:history", { conversationId })).messages.find((m) => m.id === first.id);
  assert.equal(tomb.isDeleted, true);
  assert.equal(tomb.content, undefined);
  // Alice never saw bob's delete-for-me.
  assert.equal(count(alice, "message:deleted", (e) => e.messageId === mine.id), 0);
  await refusedWith(alice, "message:edit", { messageId: first.id, content: "back", conversationId }, "CONFLICT");
});

test("EDIT_WINDOW_EXPIRED and DELETE_WINDOW_EXPIRED after the configured windows", async (t) => {
  const a = uid("slow");
  const b = uid("peer");
  const opts = (u) => ({ gateway: cfg.windowsUrl });
  const slow = await connect(a, { ...opts(a), auth: { token: await token(a, "Slow", { secret: cfg.windowsSecret }) } });
  const m = await send(slow, { targetUserId: b }, "soon old");
  if (await notServedYet(t, slow, "message:edit", { messageId: m.id, content: "x" })) return;
  await new Promise((r) => setTimeout(r, cfg.windowS * 1000 + 300));
  await refusedWith(slow, "message:edit", { messageId: m.id, content: "too late", conversationId: m.conversationId }, "EDIT_WINDOW_EXPIRED");
  await refusedWith(slow, "message:delete", { messageId: m.id, conversationId: m.conversationId, deleteForEveryone: true }, "DELETE_WINDOW_EXPIRED");
});

test("reactions: added/removed events, aggregated counts, LIMIT_EXCEEDED past 20 per user", async (t) => {
  const { a, b, alice, bob, conversationId, first } = await dm();
  if (await notServedYet(t, alice, "message:reaction:add", { messageId: first.id, emoji: "👍", conversationId })) return;
  await ok(alice, "message:reaction:add", { messageId: first.id, emoji: "👍", conversationId });
  const both = await ok(bob, "message:reaction:add", { messageId: first.id, emoji: "👍", conversationId });
  assert.deepEqual(both.reactions.map((r) => [r.emoji, r.count]), [["👍", 2]]);
  assertKeys(both.reactions[0], ["emoji", "count", "userIds"], [], "reaction");
  assert.deepEqual([...both.reactions[0].userIds].sort(), [a, b].sort());
  const added = await next(alice, "message:reaction:added", (e) => e.userId === b);
  assertKeys(added, ["messageId", "userId", "emoji", "createdAt"], CHAT, "message:reaction:added");
  await ok(bob, "message:reaction:remove", { messageId: first.id, emoji: "👍", conversationId });
  const removed = await next(alice, "message:reaction:removed", (e) => e.userId === b);
  assertKeys(removed, ["messageId", "userId", "emoji"], CHAT, "message:reaction:removed");
  const emojis = ["😀", "😂", "😍", "🤔", "😎", "🙌", "🔥", "🎉", "💯", "🚀", "✅", "❤️", "👀", "🙏", "😢", "😡", "🤝", "👏", "🍕", "🌟"];
  for (const emoji of emojis) await ok(bob, "message:reaction:add", { messageId: first.id, emoji, conversationId });
  await refusedWith(bob, "message:reaction:add", { messageId: first.id, emoji: "🐱", conversationId }, "LIMIT_EXCEEDED");
  await refusedWith(bob, "message:reaction:add", { messageId: first.id, emoji: "not an emoji", conversationId }, "VALIDATION_ERROR");
});

test("pins: message:pinned / message:unpinned and pins:list", async (t) => {
  const { a, alice, bob, conversationId, first } = await dm();
  if (await notServedYet(t, alice, "message:pin", { messageId: first.id, conversationId })) return;
  await ok(alice, "message:pin", { messageId: first.id, conversationId });
  const pinned = await next(bob, "message:pinned", (e) => e.messageId === first.id);
  assertKeys(pinned, ["messageId", "pinnedBy", "pinnedAt"], CHAT, "message:pinned");
  assert.equal(pinned.pinnedBy, a);
  const list = await ok(bob, "pins:list", { conversationId });
  assert.deepEqual(list.messages.map((m) => [m.id, m.pinned]), [[first.id, true]]);
  await ok(bob, "message:unpin", { messageId: first.id, conversationId });
  const unpinned = await next(alice, "message:unpinned", (e) => e.messageId === first.id);
  assertKeys(unpinned, ["messageId", "unpinnedBy"], CHAT, "message:unpinned");
});

test("message:forward makes a new message with forwardedFrom; message:broadcast answers per target", async (t) => {
  const { a, b, alice, bob, conversationId, first } = await dm();
  if (await notServedYet(t, alice, "message:forward", { messageId: first.id, targetUserId: b })) return;
  const c = uid("carl");
  const carl = await connect(c, { gateway: 1 });
  const groupId = (await ok(bob, "group:create", { name: "fw", memberIds: [c] })).group.id;
  const fw = await ok(bob, "message:forward", { messageId: first.id, targetGroupId: groupId });
  assertKeys(fw.message, MESSAGE_KEYS.required, MESSAGE_KEYS.optional);
  assertKeys(fw.message.forwardedFrom, ["messageId", "senderId", "senderName"], [], "forwardedFrom");
  assert.equal(fw.message.forwardedFrom.senderId, a);
  const seen = await next(carl, "message:new", (m) => m.id === fw.message.id);
  assert.equal(seen.content, "hello");
  if (await notServedYet(t, bob, "message:broadcast", { content: "x", conversationIds: [conversationId] })) return;
  const cast = await ok(bob, "message:broadcast", { content: "to all", type: "TEXT", conversationIds: [conversationId], groupIds: [groupId, "g_notmine"] });
  assert.equal(cast.results.length, 3);
  const failed = cast.results.filter((r) => r.status !== "ok");
  assert.equal(failed.length, 1);
  assert.ok(["NOT_FOUND", "FORBIDDEN"].includes(failed[0].code));
  await next(alice, "message:new", (m) => m.content === "to all");
  await next(carl, "message:new", (m) => m.content === "to all");
});

test("search:messages: the ack and search:results, only my chats, never deleted", async (t) => {
  const { alice, bob, conversationId } = await dm();
  const word = `zebra${randomUUID().slice(0, 6)}`;
  if (await notServedYet(t, alice, "search:messages", { query: word })) return;
  const hit = await send(alice, { conversationId }, `the ${word} crossed`);
  const gone = await send(alice, { conversationId }, `${word} deleted`);
  await ok(alice, "message:delete", { messageId: gone.id, conversationId, deleteForEveryone: true });
  const stranger = await connect(uid("snoop"));
  const answer = await ok(bob, "search:messages", { query: word });
  assert.deepEqual(answer.results.map((m) => m.id), [hit.id]);
  assert.equal(answer.hasMore, false);
  const event = await next(bob, "search:results", (e) => e.query === word);
  assertKeys(event, ["query", "results", "hasMore"], ["cursor"], "search:results");
  assert.equal((await ok(stranger, "search:messages", { query: word })).results.length, 0);
});

test("conversation:mute / unmute reach the user's other sockets and show in sync", async (t) => {
  const { b, bob, conversationId } = await dm();
  if (await notServedYet(t, bob, "conversation:mute", { conversationId })) return;
  const bobTab = await connect(b, { gateway: 0 });
  const until = new Date(Date.now() + 3600_000).toISOString();
  await ok(bob, "conversation:mute", { conversationId, mutedUntil: until });
  const muted = await next(bobTab, "conversation:muted", (e) => e.conversationId === conversationId);
  assertKeys(muted, [], ["conversationId", "groupId", "mutedUntil"], "conversation:muted");
  assert.equal(new Date(muted.mutedUntil).getTime(), new Date(until).getTime());
  const chat = (await ok(bob, "sync", {})).chats.find((c) => c.conversationId === conversationId);
  assert.ok(chat.mutedUntil);
  await ok(bob, "conversation:unmute", { conversationId });
  const unmuted = await next(bobTab, "conversation:unmuted", (e) => e.conversationId === conversationId);
  assertKeys(unmuted, [], ["conversationId", "groupId"], "conversation:unmuted");
});

test("sync with a rev brings edits, deletes and reactions made while away", async (t) => {
  const { b, alice, bob, conversationId, first } = await dm();
  if (await notServedYet(t, alice, "message:edit", { messageId: first.id, content: "x", conversationId })) return;
  const second = await send(alice, { conversationId }, "second");
  await next(bob, "message:new", (m) => m.id === second.id);
  const cursor = (await ok(bob, "sync", {})).chats.find((c) => c.conversationId === conversationId);
  bob.disconnect();
  await ok(alice, "message:edit", { messageId: first.id, content: "changed while away", conversationId });
  await ok(alice, "message:delete", { messageId: second.id, conversationId, deleteForEveryone: true });
  const back = await connect(b, { gateway: 1 });
  await ok(back, "sync", { since: [{ conversationId, seq: cursor.lastSeq, rev: cursor.lastRev }] });
  const batch = await next(back, "message:batch", (p) => p.conversationId === conversationId);
  const byId = Object.fromEntries(batch.messages.map((m) => [m.id, m]));
  assert.equal(byId[first.id].content, "changed while away");
  assert.equal(byId[first.id].isEdited, true);
  assert.equal(byId[second.id].isDeleted, true);
  assert.ok(batch.messages.every((m, i) => i === 0 || m.rev > batch.messages[i - 1].rev));
});
