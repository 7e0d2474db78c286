// Calibration server: raw `ws`, no Socket.IO. It completes the Engine.IO / Socket.IO
// handshakes with canned frames and, when a socket emits
// `bench:blast` {id, count, rate, pad, batch}, writes `count` pre-built
// `42["message:new",{"id":..,"t":..,"pad":".."}]` WebSocket frames to every socket, `batch`
// frames per write, at `rate` messages/s (0 = as fast as the sockets drain). Building each
// frame once and writing whole batches keeps this server far cheaper than the client, so
// the load generator's own receive ceiling is what gets measured.
//
// Prints `listening <port>` on stdout once bound (port 0 = a free one, or argv[2]).
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { WebSocketServer } from 'ws';

const STEP_BASE = 1_000_000;
const port = Number(process.argv[2] ?? 0);
const server = http.createServer((_req, res) => {
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({ server, perMessageDeflate: false });
const sockets = new Set();
let nextSid = 0;

/** One unmasked server-to-client WebSocket text frame. */
function wsFrame(text) {
  const payload = Buffer.from(text);
  const n = payload.length;
  let header;
  if (n < 126) header = Buffer.from([0x81, n]);
  else if (n < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x81;
    header[1] = 126;
    header.writeUInt16BE(n, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x81;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([header, payload]);
}

wss.on('connection', (ws) => {
  const sid = `t${nextSid++}`;
  sockets.add(ws);
  ws.send(`0{"sid":"${sid}","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`);
  ws.on('message', (data) => {
    const text = data.toString();
    if (text.startsWith('40')) ws.send(`40{"sid":"${sid}"}`);
    else if (text.startsWith('42["bench:blast"')) blast(JSON.parse(text.slice(2))[1]);
  });
  ws.on('close', () => sockets.delete(ws));
  ws.on('error', () => sockets.delete(ws));
});

function blast({ id, count, rate, pad, batch }) {
  const targets = [...sockets].map((ws) => ws._socket).filter(Boolean);
  const perBatch = Math.max(1, batch | 0);
  const t0 = performance.now();
  let k = 0;
  const next = () => {
    if (k >= count) return;
    // keep kernel buffers, not our heap, as the queue: wait while any socket is backed up
    if (targets.some((s) => s.writableLength > 1 << 20)) {
      setTimeout(next, 1);
      return;
    }
    if (rate > 0 && t0 + (k * 1000) / rate > performance.now()) {
      setTimeout(next, 1);
      return;
    }
    const frames = [];
    const end = Math.min(count, k + perBatch);
    const t = (performance.timeOrigin + performance.now()).toFixed(3);
    for (; k < end; k++) {
      frames.push(wsFrame(`42["message:new",{"id":${id * STEP_BASE + k},"t":${t},"pad":"${pad}"}]`));
    }
    const buf = Buffer.concat(frames);
    for (const s of targets) if (!s.destroyed) s.write(buf);
    setImmediate(next);
  };
  next();
}

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
