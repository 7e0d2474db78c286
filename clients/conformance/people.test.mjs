// People: custom status, blocking, push devices. Unserved events must be NOT_IMPLEMENTED.
import assert from "node:assert/strict";
import { test } from "node:test";
import { assertKeys, connect, dm, next, notServedYet, ok, randomUUID, refusedWith, uid } from "./lib.mjs";

test("status:set → status:updated to contacts and own sockets; an empty status clears it", async (t) => {
  const { a, alice, bob } = await dm();
  const payload = { status: "In a meeting", emoji: "📅", expiresAt: new Date(Date.now() + 3600_000).toISOString() };
  if (await notServedYet(t, alice, "status:set", payload)) return;
  const aliceTab = await connect(a, { gateway: 1 });
  await ok(alice, "status:set", payload);
  for (const sock of [bob, aliceTab]) {
    const event = await next(sock, "status:updated", (e) => e.userId === a);
    assertKeys(event, ["userId", "status"], ["emoji", "expiresAt"], "status:updated");
    assert.equal(event.status, "In a meeting");
  }
  await ok(alice, "status:set", { status: "" });
  assert.equal((await next(bob, "status:updated", (e) => e.userId === a)).status, "");
});

test("user:block: the blocked user's DMs are BLOCKED and it gets user:blocked; unblock undoes it", async (t) => {
  const { a, b, alice, bob, conversationId } = await dm();
  if (await notServedYet(t, alice, "user:block", { userId: b })) return;
  await ok(alice, "user:block", { userId: b });
  const blocked = await next(bob, "user:blocked");
  assertKeys(blocked, ["blockedBy"], [], "user:blocked");
  assert.equal(blocked.blockedBy, a);
  await refusedWith(bob, "message:send", { clientMessageId: randomUUID(), conversationId, type: "TEXT", content: "let me in" }, "BLOCKED");
  await ok(alice, "user:unblock", { userId: b });
  const unblocked = await next(bob, "user:unblocked");
  assertKeys(unblocked, ["unblockedBy"], [], "user:unblocked");
  await ok(bob, "message:send", { clientMessageId: randomUUID(), conversationId, type: "TEXT", content: "thanks" });
});

test("notification:register / unregister", async (t) => {
  const sock = await connect(uid("phone"));
  const device = { deviceId: `dev-${randomUUID().slice(0, 8)}`, platform: "android", token: `fcm-${randomUUID()}` };
  if (await notServedYet(t, sock, "notification:register", device)) return;
  await ok(sock, "notification:register", device);
  await ok(sock, "notification:unregister", { deviceId: device.deviceId });
  const bad = await refusedWith(sock, "notification:register", { ...device, platform: "pager" }, "VALIDATION_ERROR");
  assert.match(bad.error, /platform/);
});
