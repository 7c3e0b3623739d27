#!/usr/bin/env python3
"""Proxy memory vs open SSE streams and vs sessions held (benches/memory.sh starts the
processes; this drives them). Standard library only.

Streams: legacy `GET /mcp` notification streams (one session, one connection each), opened
in steps and held; the proxy's RSS is read from /proc after each step settles. Sessions:
`initialize` through the proxy, so each binds a session id to its caller in the proxy's
state (`state.backend: memory`). Prints one JSON line per step.
"""
import asyncio
import json
import os
import sys
import time

HOST = "127.0.0.1"
VERSION = "2025-11-25"


def rss_kib(pid):
    """VmRSS and its parts: RssAnon (heap, stacks) and RssFile (the binary's pages read)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                fields[name] = int(value.split()[0])
    return fields


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def post(reader, writer, port, body, session=None):
    data = json.dumps(body).encode()
    extra = f"Mcp-Session-Id: {session}\r\n" if session else ""
    writer.write(
        f"POST /mcp HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: {VERSION}\r\n"
        f"{extra}Content-Length: {len(data)}\r\n\r\n".encode() + data
    )
    await writer.drain()
    status, headers = await read_head(reader)
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    else:
        raise RuntimeError(f"POST answered without Content-Length: {status} {headers}")
    if status not in (200, 202):
        raise RuntimeError(f"POST {body.get('method')} answered {status}")
    return headers.get("mcp-session-id")


INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "memory.py", "version": "1"}},
}


async def new_session(port):
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        return await post(reader, writer, port, INITIALIZE)
    finally:
        writer.close()


async def sessions_in(port, count, conns=8):
    """`count` initializes over `conns` kept-alive connections."""
    per = [count // conns + (1 if i < count % conns else 0) for i in range(conns)]

    async def worker(n):
        reader, writer = await asyncio.open_connection(HOST, port)
        for _ in range(n):
            await post(reader, writer, port, INITIALIZE)
        writer.close()

    await asyncio.gather(*(worker(n) for n in per if n))


async def open_stream(port, session):
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(
        f"GET /mcp HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/event-stream\r\n"
        f"MCP-Protocol-Version: {VERSION}\r\nMcp-Session-Id: {session}\r\n\r\n".encode()
    )
    await writer.drain()
    status, _ = await read_head(reader)
    if status != 200:
        raise RuntimeError(f"GET stream answered {status}")
    return writer


async def settle(pid, upstream):
    await asyncio.sleep(1.5)
    rss = rss_kib(pid)
    # The tool server holds one connection per stream where the proxy holds two: a yardstick.
    rss["upstream"] = rss_kib(upstream)["VmRSS"]
    return rss, fds(pid)


async def main():
    port, pid, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    steps = [int(s) for s in sys.argv[4].split(",")]
    upstream = int(sys.argv[5])
    rss, fd = await settle(pid, upstream)
    print(json.dumps({"kind": kind, "count": 0, "rss_kib": rss["VmRSS"], "anon_kib": rss["RssAnon"], "file_kib": rss["RssFile"], "upstream_rss_kib": rss["upstream"], "fds": fd}), flush=True)
    if kind == "streams":
        session = await new_session(port)
        held = []
        for target in steps:
            started = time.monotonic()
            while len(held) < target:
                batch = min(50, target - len(held))
                held += await asyncio.gather(*(open_stream(port, session) for _ in range(batch)))
            rss, fd = await settle(pid, upstream)
            print(json.dumps({"kind": kind, "count": len(held), "rss_kib": rss["VmRSS"], "anon_kib": rss["RssAnon"], "file_kib": rss["RssFile"], "upstream_rss_kib": rss["upstream"], "fds": fd,
                              "open_s": round(time.monotonic() - started, 2)}), flush=True)
        for w in held:
            w.close()
        rss, fd = await settle(pid, upstream)
        print(json.dumps({"kind": kind, "count": 0, "after": True, "rss_kib": rss["VmRSS"], "anon_kib": rss["RssAnon"], "file_kib": rss["RssFile"], "upstream_rss_kib": rss["upstream"], "fds": fd}), flush=True)
    else:
        made = 0
        for target in steps:
            started = time.monotonic()
            await sessions_in(port, target - made)
            made = target
            rss, fd = await settle(pid, upstream)
            print(json.dumps({"kind": kind, "count": made, "rss_kib": rss["VmRSS"], "anon_kib": rss["RssAnon"], "file_kib": rss["RssFile"], "upstream_rss_kib": rss["upstream"], "fds": fd,
                              "open_s": round(time.monotonic() - started, 2)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
