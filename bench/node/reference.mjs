// The reference: a stock Node socket.io 4 server doing the same room broadcast as the
// product, WebSocket only, no permessage-deflate, with bufferutil (ws picks it up).
//
// - connection: joins the rooms listed in `socket.handshake.auth.rooms`
// - `bench:broadcast` {room, data}: io.to(room).emit('message:new', data)
// - `message:send` (ack): a plain relay, no store: the ack carries the message with an id
//   and a per-room in-memory seq; the other sockets of room `groupId` get `message:new`
// - HTTP POST /gc: global.gc() (run node with --expose-gc), answers {rss}
// - with BENCH_JWT_SECRET set (the connect-rate comparison): an `io.use` middleware
//   verifies `handshake.auth.token` with `jsonwebtoken` (HS256 pinned, audience
//   BENCH_JWT_AUD, issuer BENCH_JWT_ISS), as a team would add authentication to it
//
// Prints `listening <port>` on stdout once bound (port 0 = a free one, or argv[2]).
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { Server } from 'socket.io';

const port = Number(process.argv[2] ?? 0);
const host = process.env.BENCH_HOST ?? '127.0.0.1';

const httpServer = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/gc') {
    if (typeof global.gc === 'function') global.gc();
    const body = JSON.stringify({ rss: process.memoryUsage().rss, sockets: io.engine.clientsCount });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
    return;
  }
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"status":"ok"}');
    return;
  }
  // socket.io answers its own path; anything else is 404 (socket.io adds its listener
  // before ours, so only non-socket.io requests reach this handler).
  if (!req.url.startsWith('/socket.io/')) {
    res.writeHead(404);
    res.end();
  }
});

const io = new Server(httpServer, {
  transports: ['websocket'],
  perMessageDeflate: false,
  serveClient: false,
  maxHttpBufferSize: 1e6,
});

const seqs = new Map();

const jwtSecret = process.env.BENCH_JWT_SECRET;
if (jwtSecret) {
  const options = {
    algorithms: ['HS256'],
    audience: process.env.BENCH_JWT_AUD || undefined,
    issuer: process.env.BENCH_JWT_ISS || undefined,
  };
  io.use((socket, next) => {
    jwt.verify(socket.handshake.auth?.token, jwtSecret, options, (err, claims) => {
      if (err) return next(new Error('unauthorized'));
      socket.data.userId = claims.sub;
      next();
    });
  });
}

io.on('connection', (socket) => {
  const rooms = socket.handshake.auth?.rooms;
  if (Array.isArray(rooms) && rooms.length) socket.join(rooms);

  socket.on('bench:broadcast', (payload) => {
    if (payload && typeof payload.room === 'string') {
      io.to(payload.room).emit('message:new', payload.data);
    }
  });

  socket.on('message:send', (payload, ack) => {
    if (typeof ack !== 'function') return;
    if (!payload || typeof payload.groupId !== 'string') {
      ack({ status: 'error', code: 'VALIDATION_ERROR', error: 'groupId required' });
      return;
    }
    const room = payload.groupId;
    const seq = (seqs.get(room) ?? 0) + 1;
    seqs.set(room, seq);
    const message = { ...payload, id: randomUUID(), seq };
    ack({ status: 'ok', message });
    socket.to(room).emit('message:new', message);
  });
});

httpServer.listen(port, host, () => {
  process.stdout.write(`listening ${httpServer.address().port}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    io.close();
    process.exit(0);
  });
}
