// Shared helpers of the conformance suite: what a JavaScript client team would write
// around the stock socket.io-client. The Python harness (tests/integration/clients/
// test_conformance.py) starts the stack and passes its addresses in CHAT_CONF_*.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after } from "node:test";
import { SignJWT } from "jose";
import { io } from "socket.io-client";

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set (run through test_conformance.py)`);
  return value;
}

export const cfg = {
  urls: env("CHAT_CONF_URLS").split(","),
  strictUrl: env("CHAT_CONF_STRICT_URL"),
  strictMaxSockets: Number(env("CHAT_CONF_STRICT_MAX_SOCKETS")),
  noWorkerUrl: env("CHAT_CONF_NOWORKER_URL"),
  mediaUrl: process.env.CHAT_CONF_MEDIA_URL || "",
  secret: env("CHAT_CONF_JWT_SECRET"),
  audience: env("CHAT_CONF_JWT_AUDIENCE"),
  issuer: env("CHAT_CONF_JWT_ISSUER"),
  graceMs: Number(env("CHAT_CONF_GRACE_MS")),
  typingExpiryMs: Number(env("CHAT_CONF_TYPING_EXPIRY_MS")),
  windowsUrl: env("CHAT_CONF_WINDOWS_URL"),
  windowsSecret: env("CHAT_CONF_WINDOWS_SECRET"),
  windowS: Number(env("CHAT_CONF_WINDOW_S")),
};

/** How long a test waits for an event or an ack before calling it missing (ms). */
export const WAIT_MS = 8000;

/** A user id unique to this run, so tests never see each other's chats. */
export function uid(name) {
  return `${name}-${randomUUID().slice(0, 8)}`;
}

/** A JWT as the identity provider would sign it (HS256 with the stack's secret). */
export async function token(userId, name, { secret = cfg.secret, expiresIn = "1h", ...claims } = {}) {
  const jwt = new SignJWT({ name: name ?? userId, aud: cfg.audience, iss: cfg.issuer, ...claims })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(userId)
    .setIssuedAt()
    .setExpirationTime(expiresIn);
  return jwt.sign(new TextEncoder().encode(secret));
}

const open = new Set();
after(() => {
  for (const socket of open) socket.disconnect();
});

/** A connected socket of `userId` on gateway `gateway` (an index or a URL). Every
 * server event it receives is recorded in arrival order, for `next`. */
export async function connect(userId, { gateway = 0, name, transports = ["websocket"], auth, reconnection = false } = {}) {
  const url = typeof gateway === "number" ? cfg.urls[gateway] : gateway;
  const socket = io(url, {
    auth: auth ?? { token: await token(userId, name) },
    transports,
    reconnection,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    forceNew: true,
  });
  record(socket);
  open.add(socket);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${userId}: no connect in ${WAIT_MS} ms`)), WAIT_MS);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  return socket;
}

/** The error a refused handshake gives (`connect_error`). */
export async function refused(options) {
  const socket = io(options.url ?? cfg.urls[0], { transports: ["websocket"], reconnection: false, forceNew: true, ...options });
  open.add(socket);
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("neither connect nor connect_error")), WAIT_MS);
      socket.once("connect", () => reject(new Error("the handshake was accepted")));
      socket.once("connect_error", (err) => {
        clearTimeout(timer);
        resolve(err);
      });
    });
  } finally {
    socket.disconnect();
  }
}

function record(socket) {
  socket.received = [];
  socket.waiters = new Set();
  socket.onAny((event, payload) => {
    socket.received.push({ event, payload });
    for (const waiter of socket.waiters) waiter();
  });
}

/** The first `event` received (already or later) that `filter` accepts; it is consumed. */
export function next(socket, event, filter = () => true, timeoutMs = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const look = () => {
      const index = socket.received.findIndex((r) => r.event === event && filter(r.payload));
      if (index < 0) return false;
      const [{ payload }] = socket.received.splice(index, 1);
      socket.waiters.delete(look);
      clearTimeout(timer);
      resolve(payload);
      return true;
    };
    const timer = setTimeout(() => {
      socket.waiters.delete(look);
      reject(new Error(`no ${event} within ${timeoutMs} ms; got ${socket.received.map((r) => r.event).join(", ") || "nothing"}`));
    }, timeoutMs);
    if (!look()) socket.waiters.add(look);
  });
}

/** How many `event`s (matching `filter`) the socket holds right now. */
export function count(socket, event, filter = () => true) {
  return socket.received.filter((r) => r.event === event && filter(r.payload)).length;
}

/** Emit with an acknowledgement; the ack (it must come within WAIT_MS). */
export function ack(socket, event, payload) {
  return socket.timeout(WAIT_MS).emitWithAck(event, payload);
}

/** Like `ack`, asserting `status: 'ok'`. */
export async function ok(socket, event, payload) {
  const answer = await ack(socket, event, payload);
  assert.equal(answer.status, "ok", `${event}: ${JSON.stringify(answer)}`);
  return answer;
}

/** Asserts an error ack with `code`; the ack. */
export async function refusedWith(socket, event, payload, code, status = "error") {
  const answer = await ack(socket, event, payload);
  assert.equal(answer.status, status, `${event}: ${JSON.stringify(answer)}`);
  assert.equal(answer.code, code, `${event}: ${JSON.stringify(answer)}`);
  assert.equal(typeof answer.error, "string");
  return answer;
}

/** Asserts exactly these keys: every `required` one, nothing outside required+optional.
 * The names are those of frontend-requests.md, letter for letter. */
export function assertKeys(object, required, optional = [], what = "payload") {
  const keys = Object.keys(object);
  for (const key of required) assert.ok(keys.includes(key), `${what} lacks ${key}: ${JSON.stringify(object)}`);
  const allowed = new Set([...required, ...optional]);
  const extra = keys.filter((k) => !allowed.has(k));
  assert.deepEqual(extra, [], `${what} has unexpected fields: ${JSON.stringify(object)}`);
}

export const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export const MESSAGE_KEYS = {
  required: ["id", "seq", "senderId", "senderName", "type", "createdAt", "isEdited", "isDeleted", "reactions", "pinned", "rev"],
  optional: ["clientMessageId", "conversationId", "groupId", "senderAvatar", "content", "mediaUrl", "editedAt", "deletedAt", "replyTo", "forwardedFrom"],
};

/** Every event of the contract this deployment answers NOT_IMPLEMENTED, from the
 * AsyncAPI document the gateway serves (`x-served: false`). */
let unservedCache;
export async function unserved() {
  if (!unservedCache) {
    const doc = await (await fetch(`${cfg.urls[0]}/asyncapi.json`)).json();
    unservedCache = new Map();
    for (const op of Object.values(doc.operations)) {
      if (op.action !== "receive" || op["x-served"] !== false) continue;
      const channel = doc.channels[op.channel.$ref.split("/").pop()];
      unservedCache.set(channel.address, Boolean(op.reply));
    }
  }
  return unservedCache;
}

/** For a feature whose server side may not be deployed yet: when `event` is unserved,
 * assert the gateway answers NOT_IMPLEMENTED at once and return true (the caller stops,
 * noting why); else false, and the caller tests the real behaviour. */
export async function notServedYet(t, socket, event, payload) {
  if (!(await unserved()).has(event)) return false;
  await refusedWith(socket, event, payload, "NOT_IMPLEMENTED");
  t.diagnostic(`${event} is not served by this version (x-served: false): NOT_IMPLEMENTED checked`);
  return true;
}

/** A DM between two fresh users: their sockets and the conversation id. */
export async function dm({ gateways = [0, 1] } = {}) {
  const a = uid("alice");
  const b = uid("bob");
  const alice = await connect(a, { gateway: gateways[0], name: "Alice" });
  const bob = await connect(b, { gateway: gateways[1], name: "Bob" });
  const sent = await ok(alice, "message:send", { clientMessageId: randomUUID(), targetUserId: b, type: "TEXT", content: "hello" });
  await next(bob, "message:new", (m) => m.id === sent.message.id);
  return { a, b, alice, bob, conversationId: sent.message.conversationId, first: sent.message };
}

/** A text message from `socket` into `target` ({conversationId}|{groupId}|{targetUserId}). */
export async function send(socket, target, content, extra = {}) {
  const answer = await ok(socket, "message:send", { clientMessageId: randomUUID(), type: "TEXT", content, ...target, ...extra });
  return answer.message;
}

export { randomUUID };
