#!/usr/bin/env python3
"""A tiny WebSocket client (standard library only) for the smoke test.

ws-client.py URL [--origin ORIGIN] [--send TEXT] [--expect TEXT]... [--timeout S]
Connects, prints every text message it receives (one per line), sends TEXT once the greeting
arrived, and exits 0 as soon as every --expect TEXT has been received as a whole message or a
message prefix ("processed " matches "processed <id>"); 1 on timeout, 2 when the upgrade is refused.
"""

import argparse
import base64
import os
import socket
import struct
import sys
import time
from urllib.parse import urlsplit


def frame(opcode, payload):
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Reader:
    def __init__(self, sock, buf=b""):
        self.sock, self.buf = sock, buf

    def take(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def message(self):
        b0, b1 = self.take(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.take(8))[0]
        return b0 & 0x0F, self.take(n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--origin")
    ap.add_argument("--send")
    ap.add_argument("--expect", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=10)
    args = ap.parse_args()
    u = urlsplit(args.url)
    sock = socket.create_connection((u.hostname, u.port or 80), timeout=args.timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {u.path or '/'} HTTP/1.1", f"Host: {u.netloc}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if args.origin:
        lines.append(f"Origin: {args.origin}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(4096)
        if not chunk:
            break
        raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 101 " not in status + " ":
        print(f"upgrade refused: {status}", file=sys.stderr)
        return 2
    reader = Reader(sock, rest)
    pending = list(args.expect)
    sent = False
    deadline = time.monotonic() + args.timeout
    while pending and time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            opcode, payload = reader.message()
        except (socket.timeout, EOFError):
            break
        if opcode == 0x9:  # ping
            sock.sendall(frame(0xA, payload))
            continue
        if opcode == 0x8:
            break
        text = payload.decode(errors="replace")
        print(text, flush=True)
        pending = [p for p in pending if not (text == p or (p.endswith(" ") and text.startswith(p)))]
        if not sent and args.send is not None:
            sock.sendall(frame(0x1, args.send.encode()))
            sent = True
    try:
        sock.sendall(frame(0x8, struct.pack("!H", 1000)))
    except OSError:
        pass
    sock.close()
    if pending:
        print(f"timed out waiting for: {pending}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
