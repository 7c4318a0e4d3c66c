#!/usr/bin/env python3
"""Measures the gateway's own figures (memory per connection, a FETCH loop), on
loopback, against the real mailbox service and gateway (started by tests/e2e/harness.py):

  * gateway RSS per idle connection with N connections: plain (greeting read),
    TLS (handshake + greeting), and TLS in IDLE (LOGIN, SELECT INBOX, IDLE);
  * commands per second of a FETCH-heavy loop from 1 and from 50 clients;
  * the latency a FETCH adds over the storage-client call beneath it (median of
    a single client's FETCH round trip, next to the service's own fetch time
    measured by bench/store/store-throughput on the same data).

Usage (after `bazel build //gateway:imap-gateway //mailbox-service/... //bench/store:all`):
  python3 bench/gateway/gateway_figures.py [--connections 5000] [--seconds 10] [--json out.json]
Prints one JSON object. Bounded: every phase stops by itself.
"""

import argparse
import asyncio
import json
import os
import resource
import ssl
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))
import harness  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def read_until(reader, token, timeout=30):
    data = b""
    while token not in data:
        chunk = await asyncio.wait_for(reader.read(65536), timeout)
        if not chunk:
            raise ConnectionError("closed while waiting for %r" % token)
        data += chunk
    return data


async def open_idle(port, tls_context, mode, user, password):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls_context)
    await read_until(reader, b"\r\n")
    if mode == "idle":
        writer.write(b"a LOGIN %s %s\r\nb SELECT INBOX\r\nc IDLE\r\n" % (user.encode(), password.encode()))
        await read_until(reader, b"+ idling")
    return writer


async def measure_idle(gateway, mode, count, user, password):
    tls_context = None
    port = gateway.imap_port
    if mode in ("tls", "idle"):
        tls_context = ssl.create_default_context()
        tls_context.check_hostname = False
        tls_context.verify_mode = ssl.CERT_NONE
        port = gateway.imaps_port
    before = rss_kib(gateway.process.pid)
    writers = []
    batch = 200
    for start in range(0, count, batch):
        writers += await asyncio.gather(*[open_idle(port, tls_context, mode, user, password)
                                          for _ in range(min(batch, count - start))])
    await asyncio.sleep(2)
    after = rss_kib(gateway.process.pid)
    for writer in writers:
        writer.close()
    await asyncio.sleep(1)
    return {"connections": count, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_connection": round((after - before) / count, 2)}


async def fetch_client(port, tls_context, user, password, deadline, latencies):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls_context)
    await read_until(reader, b"\r\n")
    writer.write(b"a LOGIN %s %s\r\n" % (user.encode(), password.encode()))
    await read_until(reader, b"a OK")
    writer.write(b"b SELECT INBOX\r\n")
    await read_until(reader, b"b OK")
    done = 0
    n = 0
    while time.monotonic() < deadline:
        n += 1
        tag = b"f%d" % n
        started = time.perf_counter()
        writer.write(tag + b" FETCH 1:20 (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
        await read_until(reader, tag + b" OK")
        latencies.append(time.perf_counter() - started)
        done += 1
    writer.write(b"z LOGOUT\r\n")
    writer.close()
    return done


async def measure_fetch(gateway, clients, seconds, user, password):
    tls_context = ssl.create_default_context()
    tls_context.check_hostname = False
    tls_context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + seconds
    latencies = []
    cpu_before = os.times()
    started = time.monotonic()
    counts = await asyncio.gather(*[fetch_client(gateway.imaps_port, tls_context, user, password,
                                                 deadline, latencies) for _ in range(clients)])
    elapsed = time.monotonic() - started
    total = sum(counts)
    return {"clients": clients, "seconds": round(elapsed, 2), "commands": total,
            "commands_per_s": round(total / elapsed, 1),
            "latency_ms_p50": round(statistics.median(latencies) * 1000, 3),
            "latency_ms_p99": round(sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000, 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (19000, 19000))

    system = harness.System("gateway-figures")
    report = {}
    try:
        system.start_service()
        system.add_user("bench", "bench")
        gateway = system.start_gateway("--workers=2", "--max-connections=0",
                                         "--max-connections-per-ip=0")
        # 20 small messages for the FETCH loop.
        import imaplib
        client = imaplib.IMAP4_SSL("127.0.0.1", gateway.imaps_port,
                                   ssl_context=ssl._create_unverified_context())
        client.login("bench", "bench")
        for i in range(20):
            client.append("INBOX", None, None,
                          b"From: a@example.org\r\nSubject: message %d\r\n\r\n%s\r\n" % (i, b"x" * 2000))
        client.logout()

        loop = asyncio.new_event_loop()
        report["gateway_rss_start_kib"] = rss_kib(gateway.process.pid)
        # Each idle mode on a fresh gateway process, so freed memory of one phase
        # does not hide the cost of the next.
        for mode in ("plain", "tls", "idle"):
            fresh = system.start_gateway("--workers=2", "--max-connections=0",
                                         "--max-connections-per-ip=0")
            time.sleep(0.5)
            report["idle_" + mode] = loop.run_until_complete(
                measure_idle(fresh, mode, args.connections, "bench", "bench"))
            fresh.process.terminate()
            fresh.process.wait(timeout=30)
        for clients in (1, 50):
            report["fetch_%d_clients" % clients] = loop.run_until_complete(
                measure_fetch(gateway, clients, args.seconds, "bench", "bench"))
    finally:
        system.stop()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
