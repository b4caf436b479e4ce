#!/usr/bin/env python3
"""A TCP relay that caps the bandwidth from a target server to its clients.

  throttle_relay.py --target 127.0.0.1:PORT --rate-mib 8 --info FILE

Listens on a free 127.0.0.1 port (written to FILE as JSON once listening) and
forwards every connection to the target; bytes from the target reach the
client at RATE MiB/s at most, per connection (a token bucket with a 64 KiB
burst). Bytes from the client pass unthrottled.

The e2e upstream's service index names its own origin (127.0.0.1:PORT), so a
proxy pointed at the relay would fetch packages around it. The relay therefore
rewrites that origin to its own in what the target sends; it picks a listening
port with as many digits as the target's so every Content-Length stays right.
"""
import argparse
import asyncio
import json
import socket
import sys

CHUNK = 16 * 1024
BURST = 64 * 1024
# How long a held-back partial match of the origin waits for the next bytes
# before it is sent as it is (a response may end with it).
HOLD_SECONDS = 0.02


def bind_like(target_port, attempts=200):
    """A listening socket on 127.0.0.1 whose port has as many digits as target_port."""
    for _ in range(attempts):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        if len(str(s.getsockname()[1])) == len(str(target_port)):
            return s
        s.close()
    raise SystemExit("no free port with %d digits" % len(str(target_port)))


class Rewriter:
    """Replaces OLD with NEW (same length) in a byte stream, across chunk borders."""

    def __init__(self, old, new):
        assert len(old) == len(new)
        self.old, self.new, self.held = old, new, b""

    def feed(self, data):
        data = (self.held + data).replace(self.old, self.new)
        keep = 0
        for n in range(min(len(self.old) - 1, len(data)), 0, -1):
            if self.old.startswith(data[-n:]):
                keep = n
                break
        self.held = data[len(data) - keep:] if keep else b""
        return data[:len(data) - keep] if keep else data

    def flush(self):
        held, self.held = self.held, b""
        return held


async def pump(reader, writer, rate=0.0, rewriter=None):
    loop = asyncio.get_running_loop()
    tokens, last = float(BURST), loop.time()
    try:
        while True:
            if rewriter is not None and rewriter.held:
                try:
                    data = await asyncio.wait_for(reader.read(CHUNK), HOLD_SECONDS)
                except asyncio.TimeoutError:
                    writer.write(rewriter.flush())
                    await writer.drain()
                    continue
            else:
                data = await reader.read(CHUNK)
            if not data:
                if rewriter is not None:
                    writer.write(rewriter.flush())
                break
            if rewriter is not None:
                data = rewriter.feed(data)
            if rate:
                now = loop.time()
                tokens = min(BURST, tokens + (now - last) * rate) - len(data)
                last = now
                if tokens < 0:
                    await asyncio.sleep(-tokens / rate)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--rate-mib", type=float, default=8.0, help="MiB/s from the target to each client (0: no cap)")
    ap.add_argument("--info", required=True, help="write {\"port\": N, \"origin\": URL} here once listening")
    args = ap.parse_args()
    host, port = args.target.rsplit(":", 1)
    sock = bind_like(int(port))
    mine = sock.getsockname()[1]
    old = ("%s:%s" % (host, port)).encode()
    new = ("%s:%d" % (host, mine)).encode()
    rate = args.rate_mib * 1024 * 1024

    async def handle(client_reader, client_writer):
        try:
            target_reader, target_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, target_writer),
            pump(target_reader, client_writer, rate, Rewriter(old, new)),
        )

    server = await asyncio.start_server(handle, sock=sock)
    with open(args.info, "w") as f:
        json.dump({"port": mine, "origin": "http://%s:%d" % (host, mine)}, f)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
