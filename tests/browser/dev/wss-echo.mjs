// A stand-in for the edge's WSS relay, for developing run.mjs without the edge: an HTTPS
// server that accepts a WebSocket upgrade on GET /ws (any query; it checks that `upstream` and
// `ticket` are present, like the edge would) and echoes every message with its type.
// Dependency-free (node:https + a minimal RFC 6455 framer). Not used by the real test.
//
//   node dev/wss-echo.mjs --cert server.pem --key server.key [--host 127.0.0.1] [--port 8443]
//
// Prints one line `{"listening":"HOST:PORT"}` on stdout when ready.

import { createServer } from 'node:https';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    cert: { type: 'string' },
    key: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8443' },
  },
});
if (!opt.cert || !opt.key) {
  console.error('usage: wss-echo.mjs --cert PEM --key PEM [--host H] [--port P]');
  process.exit(2);
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

function frame(opcode, payload) {
  const len = payload.length;
  let head;
  if (len < 126) {
    head = Buffer.from([0x80 | opcode, len]);
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[0] = 0x80 | opcode;
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

const server = createServer({ cert: readFileSync(opt.cert), key: readFileSync(opt.key) }, (req, res) => {
  res.writeHead(426, { 'content-type': 'text/plain' });
  res.end('websocket only\n');
});

server.on('upgrade', (req, socket) => {
  const url = new URL(req.url, 'https://x');
  const key = req.headers['sec-websocket-key'];
  if (url.pathname !== '/ws' || !url.searchParams.get('upstream') || !url.searchParams.get('ticket') || !key) {
    socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  const accept = createHash('sha1').update(key + GUID).digest('base64');
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  let buf = Buffer.alloc(0);
  let fragments = [];
  let fragOpcode = 0;
  socket.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      const fin = (buf[0] & 0x80) !== 0;
      const opcode = buf[0] & 0x0f;
      const masked = (buf[1] & 0x80) !== 0;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      const maskOff = off;
      if (masked) off += 4;
      if (buf.length < off + len) return;
      const payload = Buffer.from(buf.subarray(off, off + len));
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= buf[maskOff + (i & 3)];
      buf = buf.subarray(off + len);
      if (opcode === 0x8) {
        socket.end(frame(0x8, payload.subarray(0, 2)));
        return;
      } else if (opcode === 0x9) {
        socket.write(frame(0xa, payload));
      } else if (opcode === 0xa) {
        // pong: ignore
      } else {
        if (opcode !== 0) fragOpcode = opcode;
        fragments.push(payload);
        if (fin) {
          socket.write(frame(fragOpcode, Buffer.concat(fragments)));
          fragments = [];
        }
      }
    }
  });
  socket.on('error', () => {});
});

server.listen(Number(opt.port), opt.host, () => {
  const a = server.address();
  console.log(JSON.stringify({ listening: `${a.address}:${a.port}` }));
});
