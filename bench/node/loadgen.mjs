// The load generator: Engine.IO v4 / Socket.IO v5 over raw `ws` WebSockets (no
// permessage-deflate), so that the client side costs as little as possible.
//
//   node loadgen.mjs <spec.json | '{...inline spec...}'>
//
// Spec (JSON): {
//   scenario: 'idle' | 'fanout' | 'e2e',
//   url: 'ws://127.0.0.1:<port>/socket.io/?EIO=4&transport=websocket', url_b: (e2e receivers),
//   auth: {type: 'jwt', secret, aud, iss} (our gateway; tokens minted here, HS256)
//       | {type: 'rooms'} (the reference: the Socket.IO CONNECT carries {rooms: [...]}),
//   sources: 32 (source addresses 127.0.0.1..127.0.0.N), concurrency: 100 (opens in flight),
//   idle:   prefix ('idle-'): socket i is user `${prefix}${i}`
//   fanout: prefix, members: M, room: group id / room name, trigger: 'external' (our
//           gateway: the orchestrator publishes on NATS) | 'broadcast' (the reference: a
//           control socket emits `bench:broadcast`) | 'blast' (trivial.mjs calibration)
//   e2e:    rooms: [groupId...] (room i = sender i + receiver i), sender_prefix, receiver_prefix
//   storm:  prefix, rooms: [groupId...], group_of: [room index of socket i...]; sockets open
//           on `url`; once armed, a socket whose connection closes reconnects to `url_b`
//           with the same token, then sends `sync` from the highest contiguous seq it holds
//   control: true = commands come as JSON lines on stdin; else `commands: [...]` are run in order
//   max_s: hard limit of the whole run (default 900)
// }
// Commands: {cmd:'open', total} (idle), {cmd:'hold', seconds}, {cmd:'step', ...} (fanout:
// id, rate, count, pad, drain_ms; e2e: id, rate, duration_s, loss_ms), {cmd:'close'};
// storm: {cmd:'arm'} (reconnect from now on), {cmd:'expect', seqs: {room index: [seq...]},
// timeout_s} (wait until every socket holds every listed seq of its room).
// Output: JSON lines on stdout: progress events ({event:'ready'|'opened'|'armed'|'step'|...})
// and, last, the result object ({event:'result', ...}).
//
// Latency is measured from the *scheduled* send time (open loop: a late send keeps its
// schedule), so a stalled server shows up in the histogram instead of slowing the load.
import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';
import WebSocket from 'ws';
import { Histogram } from './hist.mjs';
import { RawWebSocket } from './wsclient.mjs';

const CH_0 = 0x30; // '0' Engine.IO open / Socket.IO CONNECT
const CH_1 = 0x31; // '1' close / DISCONNECT
const CH_2 = 0x32; // '2' ping / EVENT
const CH_3 = 0x33; // '3' ACK
const CH_4 = 0x34; // '4' message / CONNECT_ERROR
const FAN_PREFIX = Buffer.from('42["message:new",{"id":');
const FAN_PREFIX_LEN = FAN_PREFIX.length;
const STEP_BASE = 1_000_000; // fan-out ids are step * STEP_BASE + seq

const spec = loadSpec(process.argv[2]);
// clientMessageIds are idempotency keys per sender: unique across runs on the same store
const RUN_ID = randomBytes(6).toString('hex');
const epochMs = () => performance.timeOrigin + performance.now();

const lifetime = setTimeout(() => {
  emit({ event: 'error', error: `loadgen exceeded max_s=${spec.max_s ?? 900}` });
  process.exit(3);
}, (spec.max_s ?? 900) * 1000);
lifetime.unref();

function loadSpec(arg) {
  if (!arg) throw new Error('usage: node loadgen.mjs <spec.json | inline JSON>');
  return JSON.parse(arg.trimStart().startsWith('{') ? arg : fs.readFileSync(arg, 'utf8'));
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// --- auth --------------------------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const JWT_HEADER = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));

function mintJwt(userId) {
  const now = Math.floor(Date.now() / 1000);
  const a = spec.auth;
  const body = b64url(
    JSON.stringify({ sub: userId, name: userId, aud: a.aud, iss: a.iss, iat: now, exp: now + 3600 }),
  );
  const sig = createHmac('sha256', a.secret).update(`${JWT_HEADER}.${body}`).digest('base64url');
  return `${JWT_HEADER}.${body}.${sig}`;
}

/** The Socket.IO CONNECT packet for one socket: a token (ours) or rooms (reference). */
function connectFrame(userId, rooms) {
  if (spec.auth?.type === 'jwt') return '40' + JSON.stringify({ token: mintJwt(userId) });
  return '40' + JSON.stringify({ rooms });
}

// --- one socket ----------------------------------------------------------------------

const counters = { connected: 0, refused: 0, failed: 0, closed_after_connect: 0, errors: {} };

class Conn {
  constructor(index, url, frame, handler) {
    this.index = index;
    this.url = url;
    this.frame = frame;
    this.handler = handler; // {onEvent(conn, buf), onAck(conn, buf)}
    this.state = 'new';
    this.nextAck = 0;
    this.pending = new Map(); // ack id -> message index
  }

  open() {
    const sources = spec.sources ?? 32;
    const localAddress = `127.0.0.${1 + (this.index % sources)}`;
    return new Promise((resolve) => {
      let settled = false;
      this.settle = (state) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (state === 'connected') counters.connected++;
        else if (state === 'refused') counters.refused++;
        else counters.failed++;
        resolve(state);
      };
      const timer = setTimeout(() => {
        this.error = 'timeout';
        this.settle('failed');
        this.ws?.terminate();
      }, 30_000);
      const onClose = (reason) => {
        if (this.state === 'connected') {
          counters.closed_after_connect++;
          this.handler.onClose?.(this);
        }
        if (this.state !== 'refused') this.error ??= reason;
        this.state = 'closed';
        this.settle('failed');
      };
      if (spec.client === 'ws') {
        const ws = new WebSocket(this.url, {
          perMessageDeflate: false,
          localAddress,
          handshakeTimeout: 30_000,
          skipUTF8Validation: true,
        });
        this.ws = ws;
        ws.on('message', (data) => this.onText(data));
        ws.on('error', (err) => onClose(err.code || err.message));
        ws.on('close', () => onClose('closed'));
      } else {
        const u = new URL(this.url);
        this.ws = new RawWebSocket({
          host: u.hostname,
          port: Number(u.port),
          path: u.pathname + u.search,
          localAddress,
          onOpen() {},
          onText: (data) => this.onText(data),
          onClose,
        });
      }
    });
  }

  /** One Engine.IO packet (a WebSocket text frame). */
  onText(data) {
    const b0 = data[0];
    if (b0 === CH_4) {
      const b1 = data[1];
      if (b1 === CH_2) this.handler.onEvent(this, data);
      else if (b1 === CH_3) this.handler.onAck(this, data);
      else if (b1 === CH_0) {
        this.state = 'connected';
        this.settle('connected');
      } else if (b1 === CH_4) {
        this.state = 'refused';
        this.error = data.toString().slice(2, 200);
        const retry = /"retryAfter":\s*(\d+)/.exec(this.error);
        this.retryAfterMs = retry ? Number(retry[1]) : undefined;
        this.settle('refused');
        this.ws.terminate();
      } else if (b1 === CH_1) this.state = 'disconnected';
    } else if (b0 === CH_2) this.ws.send('3'); // Engine.IO ping -> pong
    else if (b0 === CH_0) this.ws.send(this.frame); // Engine.IO open -> Socket.IO CONNECT
  }

  send(text) {
    this.ws.send(text);
  }
}

const conns = [];
const NOOP = { onEvent() {}, onAck() {} };

/** Open sockets `from..to-1` (`make(i)` -> Conn), `concurrency` handshakes in flight. */
async function openMany(from, to, make) {
  let next = from;
  const worker = async () => {
    while (next < to) {
      const conn = make(next++);
      conns.push(conn);
      const state = await conn.open();
      if (state !== 'connected' && conn.error) {
        const key = String(conn.error).slice(0, 80);
        counters.errors[key] = (counters.errors[key] ?? 0) + 1;
      }
    }
  };
  const n = Math.max(1, Math.min(spec.concurrency ?? 100, to - from));
  await Promise.all(Array.from({ length: n }, worker));
}

const openCount = () => conns.reduce((n, c) => n + (c.state === 'connected' ? 1 : 0), 0);

function cpuWindow() {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  return () => {
    const d = process.cpuUsage(cpu0);
    const wall = (performance.now() - t0) / 1000;
    const cpu = (d.user + d.system) / 1e6;
    return { wall_s: wall, cpu_s: cpu, cpu_user_s: d.user / 1e6, cpu_frac: wall > 0 ? cpu / wall : 0 };
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- fan-out -------------------------------------------------------------------------

function parseUint(buf, off) {
  let v = 0;
  for (let i = off; i < buf.length; i++) {
    const c = buf[i];
    if (c < 48 || c > 57) break;
    v = v * 10 + (c - 48);
  }
  return v;
}

/** `"t":<epoch ms>` of a fan-out payload (read once per message, at its first delivery). */
function parseT(buf) {
  const s = buf.toString('latin1', FAN_PREFIX_LEN, Math.min(buf.length, FAN_PREFIX_LEN + 64));
  const at = s.indexOf('"t":');
  return at < 0 ? NaN : parseFloat(s.slice(at + 4));
}

class FanStep {
  constructor(cmd, members) {
    this.id = cmd.id;
    this.count = cmd.count;
    this.rate = cmd.rate;
    this.members = members;
    this.expected = cmd.count * members;
    this.first = new Float64Array(cmd.count);
    this.last = new Float64Array(cmd.count);
    this.sent = new Float64Array(cmd.count);
    this.hits = new Uint32Array(cmd.count);
    this.deliveries = 0;
    this.stray = 0;
    this.done = null;
    this.finished = new Promise((r) => (this.done = r));
  }

  deliver(buf) {
    const id = parseUint(buf, FAN_PREFIX_LEN);
    const seq = id - this.id * STEP_BASE;
    if (seq < 0 || seq >= this.count) {
      this.stray++;
      return;
    }
    const now = performance.now();
    if (this.hits[seq] === 0) {
      this.first[seq] = now;
      this.sent[seq] = parseT(buf) - performance.timeOrigin; // scheduled time, our clock
    }
    this.last[seq] = now;
    this.hits[seq]++;
    if (++this.deliveries === this.expected) this.done();
  }

  summary() {
    const spread = new Histogram();
    const toFirst = new Histogram();
    const toLast = new Histogram();
    let complete = 0;
    let partial = 0;
    let none = 0;
    for (let i = 0; i < this.count; i++) {
      const h = this.hits[i];
      if (h === 0) {
        none++;
        continue;
      }
      if (h >= this.members) complete++;
      else partial++;
      spread.recordMs(this.last[i] - this.first[i]);
      toFirst.recordMs(this.first[i] - this.sent[i]);
      toLast.recordMs(this.last[i] - this.sent[i]);
    }
    return {
      messages: this.count,
      members: this.members,
      deliveries: this.deliveries,
      expected_deliveries: this.expected,
      complete_messages: complete,
      partial_messages: partial,
      undelivered_messages: none,
      stray: this.stray,
      spread: spread.summary(),
      sched_to_first: toFirst.summary(),
      sched_to_last: toLast.summary(),
    };
  }
}

async function runFanout() {
  const members = spec.members;
  let step = null;
  const handler = {
    onEvent(_conn, buf) {
      if (step !== null && buf.length > FAN_PREFIX_LEN && buf.compare(FAN_PREFIX, 0, FAN_PREFIX_LEN, 0, FAN_PREFIX_LEN) === 0) {
        step.deliver(buf);
      }
    },
    onAck() {},
  };
  const t0 = performance.now();
  await openMany(0, members, (i) => new Conn(i, spec.url, connectFrame(`${spec.prefix ?? 'fan-'}${i}`, [spec.room]), handler));
  let control = null;
  if (spec.trigger === 'broadcast' || spec.trigger === 'blast') {
    control = new Conn(members, spec.url, connectFrame(`${spec.prefix ?? 'fan-'}control`, []), NOOP);
    conns.push(control);
    await control.open();
  }
  const memberCount = conns.slice(0, members).filter((c) => c.state === 'connected').length;
  emit({ event: 'ready', ...counters, members: memberCount, connect_s: (performance.now() - t0) / 1000 });

  const steps = [];
  for await (const cmd of commands()) {
    if (cmd.cmd === 'close') break;
    if (cmd.cmd !== 'step') continue;
    step = new FanStep(cmd, memberCount);
    const win = cpuWindow();
    emit({ event: 'armed', id: cmd.id });
    const drainMs = cmd.drain_ms ?? 3000;
    const sendMs = cmd.rate > 0 ? (cmd.count / cmd.rate) * 1000 : 0;
    if (spec.trigger === 'broadcast') {
      openLoop(cmd.rate, cmd.count, (k, sched) => {
        const data = `{"id":${cmd.id * STEP_BASE + k},"t":${(performance.timeOrigin + sched).toFixed(3)},"pad":"${cmd.pad}"}`;
        control.send(`42["bench:broadcast",{"room":${JSON.stringify(spec.room)},"data":${data}}]`);
      });
    } else if (spec.trigger === 'blast') {
      control.send(`42["bench:blast",${JSON.stringify({ id: cmd.id, count: cmd.count, rate: cmd.rate, pad: cmd.pad, batch: cmd.batch ?? 16 })}]`);
    }
    const timedOut = await Promise.race([step.finished.then(() => false), sleep(sendMs + drainMs).then(() => true)]);
    const cpu = win();
    const result = { event: 'step', id: cmd.id, rate: cmd.rate, timed_out: timedOut, ...cpu, ...step.summary() };
    result.deliveries_per_s = result.deliveries / cpu.wall_s;
    emit(result);
    steps.push(result);
    step = null;
  }
  return { steps };
}

/** Calls `send(k, scheduledMs)` for k = 0..count-1 at `rate`/s from now, open loop. */
function openLoop(rate, count, send) {
  const interval = 1000 / rate;
  const t0 = performance.now();
  let k = 0;
  let maxLag = 0;
  return new Promise((resolve) => {
    const pump = () => {
      const now = performance.now();
      while (k < count && t0 + k * interval <= now) {
        const sched = t0 + k * interval;
        if (now - sched > maxLag) maxLag = now - sched;
        send(k, sched);
        k++;
      }
      if (k < count) setTimeout(pump, Math.max(0, t0 + k * interval - performance.now()));
      else resolve({ t0, max_send_lag_ms: maxLag });
    };
    pump();
  });
}

// --- end to end ----------------------------------------------------------------------

class E2EStep {
  constructor(cmd, rooms) {
    this.id = cmd.id;
    this.rate = cmd.rate;
    this.count = Math.max(1, Math.round(cmd.rate * cmd.duration_s));
    this.rooms = rooms;
    this.interval = 1000 / cmd.rate;
    this.t0 = 0;
    this.received = new Uint8Array(this.count);
    this.nReceived = 0;
    this.duplicates = 0;
    this.stray = 0;
    this.sent = 0;
    this.acked = 0;
    this.ackNotOk = 0;
    this.ackCodes = {};
    this.latency = new Histogram();
    this.ackLatency = new Histogram();
    this.finished = new Promise((r) => (this.done = r));
  }

  check() {
    if (this.sent === this.count && this.nReceived === this.count && this.acked === this.count) this.done();
  }
}

async function runE2E() {
  const rooms = spec.rooms;
  const S = rooms.length;
  let step = null;
  const receiverHandler = {
    onEvent(_conn, buf) {
      let msg;
      try {
        const arr = JSON.parse(buf.toString('utf8', 2));
        if (arr[0] !== 'message:new') return;
        msg = arr[1];
      } catch {
        return;
      }
      const now = performance.now();
      const parts = String(msg.content ?? '').split(':');
      if (parts.length !== 3 || step === null) return;
      const stepId = Number(parts[0]);
      const k = Number(parts[1]);
      if (stepId !== step.id || !(k >= 0 && k < step.count)) {
        step.stray++;
        return;
      }
      if (step.received[k]) {
        step.duplicates++;
        return;
      }
      step.received[k] = 1;
      step.nReceived++;
      step.latency.recordMs(now - Number(parts[2]));
      step.check();
    },
    onAck() {},
  };
  const senderHandler = {
    onEvent() {},
    onAck(conn, buf) {
      let i = 2;
      let ackId = 0;
      while (i < buf.length && buf[i] >= 48 && buf[i] <= 57) ackId = ackId * 10 + (buf[i++] - 48);
      const entry = conn.pending.get(ackId);
      if (entry === undefined) return;
      conn.pending.delete(ackId);
      const [stepRef, k] = entry;
      const now = performance.now();
      let status = 'unparsable';
      let code;
      try {
        const ack = JSON.parse(buf.toString('utf8', i))[0];
        status = ack?.status;
        code = ack?.code;
      } catch {
        // counted as not ok
      }
      if (stepRef !== step) return;
      stepRef.acked++;
      if (status !== 'ok') {
        stepRef.ackNotOk++;
        const key = `${status}:${code ?? ''}`;
        stepRef.ackCodes[key] = (stepRef.ackCodes[key] ?? 0) + 1;
      }
      stepRef.ackLatency.recordMs(now - (stepRef.t0 + k * stepRef.interval));
      stepRef.check();
    },
  };
  const t0 = performance.now();
  const sp = spec.sender_prefix ?? 's-';
  const rp = spec.receiver_prefix ?? 'r-';
  // receivers first, so that every room has its receiver before anything is sent
  await openMany(0, S, (i) => new Conn(i, spec.url_b ?? spec.url, connectFrame(`${rp}${i}`, [rooms[i]]), receiverHandler));
  await openMany(S, 2 * S, (i) => new Conn(i, spec.url, connectFrame(`${sp}${i - S}`, [rooms[i - S]]), senderHandler));
  const senders = conns.slice(S, 2 * S);
  emit({ event: 'ready', ...counters, connect_s: (performance.now() - t0) / 1000 });

  const steps = [];
  let clientSeq = 0;
  for await (const cmd of commands()) {
    if (cmd.cmd === 'close') break;
    if (cmd.cmd !== 'step') continue;
    step = new E2EStep(cmd, S);
    const current = step;
    const win = cpuWindow();
    emit({ event: 'armed', id: cmd.id });
    const loop = openLoop(cmd.rate, current.count, (k, sched) => {
      if (k === 0) current.t0 = sched;
      const i = k % S;
      const conn = senders[i];
      if (conn.state !== 'connected') return;
      const ackId = conn.nextAck++;
      conn.pending.set(ackId, [current, k]);
      const payload = {
        clientMessageId: `${RUN_ID}-${cmd.id}-${clientSeq++}`,
        groupId: rooms[i],
        type: 'TEXT',
        content: `${cmd.id}:${k}:${sched.toFixed(3)}`,
      };
      conn.send(`42${ackId}["message:send",${JSON.stringify(payload)}]`);
      current.sent++;
    });
    // t0 must be known before the first ack can arrive: openLoop sends k=0 synchronously.
    const sendInfo = await loop;
    current.check();
    const lossMs = cmd.loss_ms ?? 5000;
    const timedOut = await Promise.race([current.finished.then(() => false), sleep(lossMs).then(() => true)]);
    const cpu = win();
    const result = {
      event: 'step',
      id: cmd.id,
      rate: cmd.rate,
      duration_s: cmd.duration_s,
      timed_out: timedOut,
      ...cpu,
      sent: current.sent,
      scheduled: current.count,
      received: current.nReceived,
      lost: current.count - current.nReceived,
      duplicates: current.duplicates,
      stray: current.stray,
      acked: current.acked,
      ack_not_ok: current.ackNotOk,
      ack_codes: current.ackCodes,
      max_send_lag_ms: sendInfo.max_send_lag_ms,
      latency: current.latency.summary(),
      ack_latency: current.ackLatency.summary(),
    };
    emit(result);
    steps.push(result);
    step = null;
    for (const c of senders) c.pending.clear();
  }
  return { steps };
}

// --- reconnect storm -------------------------------------------------------------------

/** Every `seq` in a `message:new` or `message:batch` event of a room. */
function seqsOf(buf) {
  let arr;
  try {
    arr = JSON.parse(buf.toString('utf8', 2));
  } catch {
    return [];
  }
  if (arr[0] === 'message:new') return [arr[1]?.seq];
  if (arr[0] === 'message:batch') return (arr[1]?.messages ?? []).map((m) => m.seq);
  return [];
}

async function runStorm() {
  const rooms = spec.rooms;
  const groupOf = spec.group_of;
  const prefix = spec.prefix ?? 'storm-';
  const n = groupOf.length;
  const held = Array.from({ length: n }, () => new Set()); // seqs each socket holds
  const frames = new Array(n);
  let armedAt = null;
  let expected = null; // room index -> [seq]
  let missingTotal = 0;
  const missing = new Int32Array(n); // expected seqs socket i lacks
  const reconnectedAt = new Float64Array(n);
  const caughtUpAt = new Float64Array(n);
  const attempts = new Uint32Array(n);
  const stormErrors = {};
  let reconnected = 0;
  let syncNotOk = 0;

  const cursor = (i) => {
    let s = 0;
    while (held[i].has(s + 1)) s++;
    return s;
  };
  const hold = (i, seq) => {
    if (typeof seq !== 'number' || held[i].has(seq)) return;
    held[i].add(seq);
    if (expected === null || missing[i] === 0) return;
    if ((expected.get(groupOf[i]) ?? EMPTY).has(seq)) {
      missing[i]--;
      missingTotal--;
      if (missing[i] === 0) caughtUpAt[i] = performance.now();
    }
  };
  const EMPTY = new Set();

  const handler = {
    onEvent(conn, buf) {
      for (const seq of seqsOf(buf)) hold(conn.index, seq);
    },
    onAck(conn, buf) {
      const text = buf.toString('utf8', 2);
      if (text.includes('"status":"ok"')) return;
      syncNotOk++;
      // A client told to retry (`retry` + retryAfter) syncs again, like a real one.
      const retry = /"retryAfter":\s*(\d+)/.exec(text);
      if (retry && conn.state === 'connected') {
        setTimeout(() => {
          if (conn.state !== 'connected') return;
          const since = [{ groupId: rooms[groupOf[conn.index]], seq: cursor(conn.index) }];
          conn.send(`420["sync",${JSON.stringify({ since })}]`);
        }, Number(retry[1]));
      }
    },
    onClose(conn) {
      if (armedAt !== null && !conn.replaced) {
        conn.replaced = true;
        reconnect(conn.index);
      }
    },
  };

  const reconnect = async (i) => {
    for (;;) {
      attempts[i]++;
      const conn = new Conn(i, spec.url_b, frames[i], handler);
      conns[i] = conn;
      const state = await conn.open();
      if (state === 'connected') {
        reconnectedAt[i] = performance.now();
        reconnected++;
        const since = [{ groupId: rooms[groupOf[i]], seq: cursor(i) }];
        conn.send(`420["sync",${JSON.stringify({ since })}]`);
        return;
      }
      const key = String(conn.error ?? state).slice(0, 80);
      stormErrors[key] = (stormErrors[key] ?? 0) + 1;
      if (performance.now() - armedAt > (spec.max_storm_s ?? 120) * 1000) return;
      // A refused or failed handshake retries like a client: after retryAfter, or 100-300 ms.
      await sleep(conn.retryAfterMs ?? 100 + Math.random() * 200);
    }
  };

  const t0 = performance.now();
  await openMany(0, n, (i) => {
    frames[i] = connectFrame(`${prefix}${i}`, [rooms[groupOf[i]]]);
    return new Conn(i, spec.url, frames[i], handler);
  });
  emit({ event: 'ready', ...counters, connect_s: (performance.now() - t0) / 1000 });

  for await (const cmd of commands()) {
    if (cmd.cmd === 'close') break;
    if (cmd.cmd === 'arm') {
      armedAt = performance.now();
      emit({ event: 'armed' });
    } else if (cmd.cmd === 'expect') {
      expected = new Map(Object.entries(cmd.seqs).map(([k, v]) => [Number(k), new Set(v)]));
      for (let i = 0; i < n; i++) {
        let m = 0;
        for (const seq of expected.get(groupOf[i]) ?? EMPTY) if (!held[i].has(seq)) m++;
        missing[i] = m;
        missingTotal += m;
      }
      const deadline = performance.now() + (cmd.timeout_s ?? 60) * 1000;
      while (!(missingTotal === 0 && reconnected === n) && performance.now() < deadline) await sleep(10);
      const timedOut = !(missingTotal === 0 && reconnected === n);
      const last = (arr) => arr.reduce((a, b) => Math.max(a, b), 0);
      let lacking = 0;
      for (let i = 0; i < n; i++) if (missing[i] > 0) lacking++;
      const result = {
        event: 'storm',
        sockets: n,
        timed_out: timedOut,
        reconnected,
        open: openCount(),
        attempts: attempts.reduce((a, b) => a + b, 0),
        sync_not_ok: syncNotOk,
        sockets_missing_messages: lacking,
        messages_missing: missingTotal,
        all_reconnected_s: reconnected === n ? (last(reconnectedAt) - armedAt) / 1000 : null,
        all_caught_up_s: !timedOut ? (Math.max(last(caughtUpAt), last(reconnectedAt)) - armedAt) / 1000 : null,
        errors: stormErrors,
      };
      emit(result);
    }
  }
  return {};
}

// --- idle ----------------------------------------------------------------------------

async function runIdle() {
  const prefix = spec.prefix ?? 'idle-';
  const points = [];
  emit({ event: 'ready', ...counters });
  for await (const cmd of commands()) {
    if (cmd.cmd === 'close') break;
    if (cmd.cmd === 'open') {
      const t0 = performance.now();
      const win = cpuWindow();
      await openMany(conns.length, cmd.total, (i) => new Conn(i, spec.url, connectFrame(`${prefix}${i}`, []), NOOP));
      const point = { event: 'opened', total: cmd.total, open: openCount(), ...counters, open_s: (performance.now() - t0) / 1000, ...win() };
      emit(point);
      points.push(point);
    } else if (cmd.cmd === 'hold') {
      await sleep(cmd.seconds * 1000);
      const held = { event: 'held', seconds: cmd.seconds, open: openCount(), ...counters };
      emit(held);
      points.push(held);
    }
  }
  return { points };
}

// --- commands and main -----------------------------------------------------------------

async function* commands() {
  if (!spec.control) {
    for (const cmd of spec.commands ?? []) yield cmd;
    yield { cmd: 'close' };
    return;
  }
  for (;;) {
    const { value: line, done } = await stdinLines.next();
    if (done) break;
    const text = line.trim();
    if (!text) continue;
    yield JSON.parse(text);
  }
  yield { cmd: 'close' }; // stdin closed: the orchestrator is gone
}

// Created at start so that no line is lost before the first `for await`.
const stdinLines = spec.control ? readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]() : null;

async function main() {
  const run = { idle: runIdle, fanout: runFanout, e2e: runE2E, storm: runStorm }[spec.scenario];
  if (!run) throw new Error(`unknown scenario ${spec.scenario}`);
  const win = cpuWindow();
  const body = await run();
  const cpu = win();
  const open = openCount();
  for (const c of conns) c.ws?.terminate();
  emit({ event: 'result', scenario: spec.scenario, ...counters, open_at_close: open, total_cpu: cpu, ...body });
  process.exit(0);
}

// A signal ends the run like a `close` command: sockets dropped, the counts reported.
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    const open = openCount();
    for (const c of conns) c.ws?.terminate();
    emit({ event: 'result', scenario: spec.scenario, interrupted: sig, ...counters, open_at_close: open });
    process.exit(0);
  });
}

main().catch((err) => {
  emit({ event: 'error', error: String(err?.stack ?? err) });
  process.exit(1);
});
