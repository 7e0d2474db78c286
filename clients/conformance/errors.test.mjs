// The handshake refusals and the error codes that come from the edge: UNAUTHORIZED,
// RATE_LIMITED, UNAVAILABLE, NOT_IMPLEMENTED.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ack, cfg, connect, randomUUID, refused, refusedWith, token, uid, unserved } from "./lib.mjs";

for (const [what, makeAuth] of [
  ["no token", async () => ({})],
  ["an expired token", async () => ({ token: await token(uid("late"), "Late", { expiresIn: Math.floor(Date.now() / 1000) - 120 }) })],
  ["a forged token", async () => ({ token: await token(uid("mallory"), "Mallory", { secret: "not-the-secret-not-the-secret-32b" }) })],
  ["a token for another audience", async () => ({ token: await token(uid("other"), "Other", { aud: "somebody-else" }) })],
]) {
  test(`the handshake refuses ${what}: connect_error "unauthorized", data.code UNAUTHORIZED`, async () => {
    for (const transports of [["websocket"], ["polling"]]) {
      const err = await refused({ auth: await makeAuth(), transports });
      assert.equal(err.message, "unauthorized");
      assert.deepEqual(err.data?.code, "UNAUTHORIZED");
    }
  });
}

test("RATE_LIMITED: past 10 message:send in a burst the ack says retry with retryAfter", async () => {
  const a = uid("flood");
  const b = uid("target");
  const sock = await connect(a, { gateway: cfg.strictUrl });
  const answers = await Promise.all(
    Array.from({ length: 14 }, (_, i) =>
      ack(sock, "message:send", { clientMessageId: randomUUID(), targetUserId: b, type: "TEXT", content: `n${i}`, retryCount: 0 }),
    ),
  );
  const limited = answers.filter((x) => x.status === "retry");
  assert.ok(answers.filter((x) => x.status === "ok").length >= 10, JSON.stringify(answers.map((x) => x.status)));
  assert.ok(limited.length >= 1, JSON.stringify(answers.map((x) => x.status)));
  for (const x of limited) {
    assert.equal(x.code, "RATE_LIMITED");
    assert.ok(x.retryAfter > 0);
    assert.equal(x.retryCount, 0);
  }
});

test("LIMIT_EXCEEDED: a user past the gateway's sockets per user is refused at the handshake", async () => {
  const me = uid("tabs");
  for (let i = 0; i < cfg.strictMaxSockets; i++) await connect(me, { gateway: cfg.strictUrl });
  const err = await refused({ url: cfg.strictUrl, auth: { token: await token(me) } });
  assert.equal(err.data?.code, "LIMIT_EXCEEDED");
});

test("a message over the announced maxPayload gets a VALIDATION_ERROR ack and the socket stays", async () => {
  const sock = await connect(uid("big"));
  const huge = "x".repeat(1_200_000);
  const answer = await refusedWith(sock, "message:send", { clientMessageId: randomUUID(), targetUserId: uid("peer"), type: "TEXT", content: huge }, "VALIDATION_ERROR");
  assert.equal(typeof answer.error, "string");
  assert.equal(sock.connected, true);
  await ack(sock, "groups:list", {});
});

test("UNAVAILABLE: with no worker behind the gateway the handshake says so, with retryAfter, never a hang", async () => {
  const t0 = Date.now();
  const err = await refused({ url: cfg.noWorkerUrl, auth: { token: await token(uid("lonely")) } });
  assert.equal(err.message, "unavailable");
  assert.equal(err.data?.code, "UNAVAILABLE");
  assert.ok(err.data.retryAfter > 0);
  assert.ok(Date.now() - t0 < 5000);
});

test("NOT_IMPLEMENTED at once for every event the AsyncAPI document marks x-served: false", async (t) => {
  const pending = await unserved();
  const sock = await connect(uid("early"));
  if (pending.size === 0) t.diagnostic("every event of the contract is served");
  for (const [event, hasAck] of pending) {
    if (!hasAck) continue;
    const t0 = Date.now();
    const answer = await refusedWith(sock, event, {}, "NOT_IMPLEMENTED");
    assert.ok(Date.now() - t0 < 1000, `${event} took ${Date.now() - t0} ms`);
    assert.match(answer.error, new RegExp(event));
  }
});
