// A minimal RFC 6455 WebSocket client for the load generator: text frames only, no
// extensions (so never permessage-deflate), reading into one shared buffer through
// `net.connect({onread})`. That skips the stream machinery and the `ws` receiver that a
// `ws` client pays per received frame (several µs: as much as the server under test spends
// per delivery), so the generator stays well under its core at the rates measured.
//
// A received payload is handed to `onText(buf)` as a view of the shared buffer: valid only
// during the call (parse it there, keep nothing).
import { randomBytes } from 'node:crypto';
import net from 'node:net';

const READ_BUFFER = Buffer.allocUnsafe(1 << 18);
const HEADER_END = Buffer.from('\r\n\r\n');
// Client frames must be masked; a zero key leaves the payload as is (the server unmasks
// every frame the same way, whatever the key).
const ZERO_MASK = Buffer.alloc(4);

export class RawWebSocket {
  /**
   * @param {{host: string, port: number, path: string, localAddress?: string,
   *   onOpen: () => void, onText: (buf: Buffer) => void, onClose: (reason: string) => void}} opts
   */
  constructor(opts) {
    this.opts = opts;
    this.open = false;
    this.closed = false;
    this.pending = null; // bytes of an incomplete frame (copied out of the shared buffer)
    this.fragments = null; // payloads of a fragmented message
    const key = randomBytes(16).toString('base64');
    this.sock = net.connect({
      host: opts.host,
      port: opts.port,
      localAddress: opts.localAddress,
      onread: { buffer: READ_BUFFER, callback: (n, buf) => this._onRead(buf, n) },
    });
    this.sock.setNoDelay(true);
    this.sock.on('connect', () => {
      this.sock.write(
        `GET ${opts.path} HTTP/1.1\r\nHost: ${opts.host}:${opts.port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    this.sock.on('error', (err) => this._close(err.code || err.message));
    this.sock.on('close', () => this._close('closed'));
    this.sock.on('end', () => this._close('end'));
  }

  _close(reason) {
    if (this.closed) return;
    this.closed = true;
    this.open = false;
    this.sock.destroy();
    this.opts.onClose(reason);
  }

  _onRead(buf, n) {
    let data = buf;
    let end = n;
    if (this.pending !== null) {
      data = Buffer.concat([this.pending, buf.subarray(0, n)]);
      end = data.length;
      this.pending = null;
    }
    let off = 0;
    if (!this.open) {
      const at = data.subarray(0, end).indexOf(HEADER_END);
      if (at < 0) {
        this.pending = Buffer.from(data.subarray(0, end));
        return;
      }
      const status = data.toString('latin1', 0, Math.min(at, 64));
      if (!status.startsWith('HTTP/1.1 101')) {
        this._close(`upgrade refused: ${status.split('\r\n')[0]}`);
        return;
      }
      this.open = true;
      off = at + 4;
      this.opts.onOpen();
    }
    while (off + 2 <= end) {
      const b0 = data[off];
      const b1 = data[off + 1];
      let len = b1 & 0x7f;
      let hdr = 2;
      if (len === 126) {
        if (off + 4 > end) break;
        len = data.readUInt16BE(off + 2);
        hdr = 4;
      } else if (len === 127) {
        if (off + 10 > end) break;
        len = Number(data.readBigUInt64BE(off + 2));
        hdr = 10;
      }
      if (off + hdr + len > end) break;
      const payload = data.subarray(off + hdr, off + hdr + len);
      off += hdr + len;
      const opcode = b0 & 0x0f;
      const fin = (b0 & 0x80) !== 0;
      if (opcode === 1 || opcode === 2 || opcode === 0) {
        if (fin && this.fragments === null) this.opts.onText(payload);
        else {
          (this.fragments ??= []).push(Buffer.from(payload));
          if (fin) {
            const whole = Buffer.concat(this.fragments);
            this.fragments = null;
            this.opts.onText(whole);
          }
        }
      } else if (opcode === 9) this._frame(0x8a, Buffer.from(payload));
      else if (opcode === 8) {
        this._frame(0x88, Buffer.alloc(0));
        this._close('close frame');
        return;
      }
      if (this.closed) return;
    }
    if (off < end) this.pending = Buffer.from(data.subarray(off, end));
  }

  _frame(first, payload) {
    if (this.closed) return;
    const n = payload.length;
    let header;
    if (n < 126) header = Buffer.from([first, 0x80 | n]);
    else if (n < 65536) {
      header = Buffer.allocUnsafe(4);
      header[0] = first;
      header[1] = 0x80 | 126;
      header.writeUInt16BE(n, 2);
    } else {
      header = Buffer.allocUnsafe(10);
      header[0] = first;
      header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(n), 2);
    }
    this.sock.write(Buffer.concat([header, ZERO_MASK, payload]));
  }

  /** Send one text frame. */
  send(text) {
    this._frame(0x81, Buffer.from(text));
  }

  /** Drop the connection now (no closing handshake). */
  terminate() {
    this._close('terminated');
  }
}
