// Presence: online/offline with the grace period, manual status, group pages, last seen.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ISO_MS, assertKeys, cfg, connect, dm, next, ok, uid } from "./lib.mjs";

const PRESENCE_KEYS = [["userId", "status"], ["lastSeenAt", "customStatus"]];

test("presence:update online, away by presence:set, then offline after the grace period", async () => {
  const { a, b, bob } = await dm();
  const alice2 = await connect(a, { gateway: 1 });
  await ok(alice2, "presence:set", { status: "away" });
  const away = await next(bob, "presence:update", (p) => p.userId === a && p.status === "away");
  assertKeys(away, ...PRESENCE_KEYS, "presence:update");
  // Bob goes away entirely: alice hears offline only after the grace period.
  const t0 = Date.now();
  bob.disconnect();
  const off = await next(alice2, "presence:update", (p) => p.userId === b && p.status === "offline", cfg.graceMs + 8000);
  assert.ok(Date.now() - t0 >= cfg.graceMs - 200, "offline announced before the grace period");
  assertKeys(off, ...PRESENCE_KEYS, "presence:update");
  assert.match(off.lastSeenAt, ISO_MS);
  const back = await connect(b, { gateway: 1 });
  await next(alice2, "presence:update", (p) => p.userId === b && p.status === "online");
  const seen = await ok(back, "presence:last_seen", { userIds: [a] });
  assert.ok(Array.isArray(seen.lastSeen));
});

test("presence:query pages a group's online members; presence:subscribe sends presence:state", async () => {
  const [a, b, c] = [uid("pa"), uid("pb"), uid("pc")];
  const pa = await connect(a);
  const pb = await connect(b, { gateway: 1 });
  const groupId = (await ok(pa, "group:create", { name: "Here", memberIds: [b, c] })).group.id;
  await next(pb, "group:member:added", (e) => e.groupId === groupId && e.userId === b);
  const page = await ok(pa, "presence:query", { groupId, limit: 1 });
  assertKeys(page, ["onlineUserIds", "total", "hasMore", "status"], ["cursor", "groupId"], "presence:query ack");
  assert.equal(page.total, 2);
  assert.equal(page.onlineUserIds.length, 1);
  assert.equal(page.hasMore, true);
  const rest = await ok(pa, "presence:query", { groupId, limit: 1, cursor: page.cursor });
  assert.deepEqual([...page.onlineUserIds, ...rest.onlineUserIds].sort(), [a, b].sort());
  await ok(pb, "presence:subscribe", { groupId });
  const state = await next(pb, "presence:state");
  assertKeys(state, ["onlineUserIds", "total", "hasMore"], ["cursor", "groupId"], "presence:state");
  assert.deepEqual([...state.onlineUserIds].sort(), [a, b].sort());
});

test("presence:last_seen answers contacts only", async () => {
  const { a, b, alice, bob } = await dm();
  const stranger = uid("stranger");
  await connect(stranger);
  bob.disconnect();
  await next(alice, "presence:update", (p) => p.userId === b && p.status === "offline", cfg.graceMs + 8000);
  const answer = await ok(alice, "presence:last_seen", { userIds: [b, stranger] });
  const ids = answer.lastSeen.map((x) => x.userId);
  assert.deepEqual(ids, [b], JSON.stringify(answer));
  assertKeys(answer.lastSeen[0], ["userId", "lastSeenAt"], [], "lastSeen");
  assert.match(answer.lastSeen[0].lastSeenAt, ISO_MS);
  void a;
});
