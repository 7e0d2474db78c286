// Call signaling between two users on two gateways (the media path is the browser's:
// see the Playwright test; here only what socket.io-client sees).
import assert from "node:assert/strict";
import { test } from "node:test";
import { assertKeys, connect, next, notServedYet, ok, refusedWith, uid } from "./lib.mjs";

const SDP =
  "v=0\r\no=- 3912345678 3912345678 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" +
  "a=group:BUNDLE 0\r\na=msid-semantic:WMS *\r\n" +
  "m=audio 9 UDP/TLS/RTP/SAVPF 96 0 8\r\nc=IN IP4 0.0.0.0\r\na=sendrecv\r\na=mid:0\r\n" +
  "a=rtpmap:96 opus/48000/2\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n" +
  "a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:" +
  "66:77:88:99:AA:BB:CC:DD:EE:FF\r\na=setup:actpass\r\n";
const OFFER = { type: "offer", sdp: SDP };
const ANSWER = { type: "answer", sdp: SDP.replace("actpass", "active") };
const CANDIDATE = { candidate: "candidate:1 1 udp 2130706431 192.0.2.10 50000 typ host", sdpMid: "0", sdpMLineIndex: 0 };

async function pair() {
  const [a, b] = [uid("caller"), uid("callee")];
  const caller = await connect(a, { name: "Caller" });
  const callee = await connect(b, { gateway: 1, name: "Callee" });
  return { a, b, caller, callee };
}

test("call:offer → call:incoming, call:answer → call:accepted, candidates both ways, call:end → call:ended", async (t) => {
  const { a, b, caller, callee } = await pair();
  if (await notServedYet(t, caller, "call:offer", { targetUserId: b, offer: OFFER, callType: "video" })) return;
  const offered = await ok(caller, "call:offer", { targetUserId: b, offer: OFFER, callType: "video" });
  assert.ok(Array.isArray(offered.iceServers));
  const incoming = await next(callee, "call:incoming", (e) => e.callId === offered.callId);
  assertKeys(incoming, ["callId", "callerId", "callerName", "callType", "offer", "iceServers"], ["callerAvatar"], "call:incoming");
  assert.deepEqual([incoming.callerId, incoming.callerName, incoming.callType], [a, "Caller", "video"]);
  assert.deepEqual(incoming.offer, OFFER);
  await ok(callee, "call:answer", { callId: offered.callId, answer: ANSWER });
  const accepted = await next(caller, "call:accepted", (e) => e.callId === offered.callId);
  assertKeys(accepted, ["callId", "answer"], [], "call:accepted");
  assert.deepEqual(accepted.answer, ANSWER);
  caller.emit("call:ice-candidate", { callId: offered.callId, candidate: CANDIDATE });
  const ice = await next(callee, "call:ice-candidate", (e) => e.callId === offered.callId);
  assertKeys(ice, ["callId", "candidate", "fromUserId"], [], "call:ice-candidate");
  assert.equal(ice.fromUserId, a);
  callee.emit("call:ice-candidate", { callId: offered.callId, candidate: CANDIDATE });
  assert.equal((await next(caller, "call:ice-candidate", (e) => e.callId === offered.callId)).fromUserId, b);
  await ok(caller, "call:end", { callId: offered.callId });
  for (const sock of [caller, callee]) {
    const ended = await next(sock, "call:ended", (e) => e.callId === offered.callId);
    assertKeys(ended, ["callId", "reason"], ["endedBy", "duration"], "call:ended");
    assert.equal(ended.reason, "hangup");
  }
  const history = await ok(callee, "calls:history", {});
  assert.ok(history.calls.some((c) => c.callId === offered.callId || c.id === offered.callId));
});

test("call:reject → call:rejected declined; CONFLICT for a caller already in a call; FORBIDDEN for outsiders", async (t) => {
  const { b, caller, callee } = await pair();
  if (await notServedYet(t, caller, "call:offer", { targetUserId: b, offer: OFFER, callType: "audio" })) return;
  const offered = await ok(caller, "call:offer", { targetUserId: b, offer: OFFER, callType: "audio" });
  await next(callee, "call:incoming", (e) => e.callId === offered.callId);
  const third = uid("third");
  await connect(third);
  await refusedWith(caller, "call:offer", { targetUserId: third, offer: OFFER, callType: "audio" }, "CONFLICT");
  const outsider = await connect(uid("outsider"));
  await refusedWith(outsider, "call:answer", { callId: offered.callId, answer: ANSWER }, "FORBIDDEN");
  await refusedWith(outsider, "call:end", { callId: "nosuchcall" }, "NOT_FOUND");
  await ok(callee, "call:reject", { callId: offered.callId });
  const rejected = await next(caller, "call:rejected", (e) => e.callId === offered.callId);
  assertKeys(rejected, ["callId", "reason"], [], "call:rejected");
  assert.equal(rejected.reason, "declined");
});
