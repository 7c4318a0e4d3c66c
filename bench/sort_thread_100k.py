#!/usr/bin/env python3
"""SORT and THREAD on one large mailbox, end to end from a client.

Starts a mailbox service (SQLite) and a gateway from this tree's build (as the e2e
tests do), fills one user's INBOX with N generated messages through
`mailbox-admin import mbox` (not measured), then times from a client socket over
TLS, by the client's clock:

    UID SORT (REVERSE DATE) UTF-8 ALL
    UID SORT (SUBJECT) UTF-8 ALL
    UID THREAD REFERENCES UTF-8 ALL

each run twice (the first run of a fresh service reads the keys from disk; the
second finds them in SQLite's cache), and reports the service's RSS before and
after, and its peak RSS (VmHWM) over the commands, from /proc.

    bazel build //gateway:imap-gateway //mailbox-service/server:mailbox-service \\
        //mailbox-service/admin:mailbox-admin
    python3 bench/sort_thread_100k.py --messages=100000

Prints one JSON object. Bounded: every command has a timeout, and everything the
script started is stopped when it ends.
"""

import argparse
import json
import os
import random
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness  # noqa: E402

WORDS = ("invoice meeting lunch report budget launch review draft travel notes release "
         "holiday contract question update weekly planning offsite hiring design").split()


def generate_mbox(path, count, seed=1):
    """count messages in threads: about a third start a topic, the rest reply to an
    earlier message of theirs (References and Re:), with varied senders and dates."""
    rng = random.Random(seed)
    base = 1735689600  # 2025-01-01
    topics = []
    with open(path, "wb") as out:
        for i in range(count):
            sent = base + rng.randrange(365 * 86400)
            date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(sent))
            sender = "user%d@example.org" % rng.randrange(500)
            if topics and rng.random() < 0.66:
                topic = rng.choice(topics)
                subject = "Re: " + topic["subject"]
                refs = topic["ids"][-5:]
                extra = "In-Reply-To: %s\nReferences: %s\n" % (refs[-1], " ".join(refs))
            else:
                topic = {"subject": "%s %s %d" % (rng.choice(WORDS), rng.choice(WORDS), i),
                         "ids": []}
                topics.append(topic)
                subject = topic["subject"]
                extra = ""
            message_id = "<m%d@bench.example>" % i
            topic["ids"].append(message_id)
            message = ("From: User <%s>\nTo: inbox@example.org\nSubject: %s\nDate: %s\n"
                       "Message-ID: %s\n%s\nMessage %d of the sort bench.\n"
                       % (sender, subject, date, message_id, extra, i))
            out.write(b"From bench@example.org Thu Jan  1 00:00:00 2025\n")
            out.write(message.encode())
            out.write(b"\n")


def rss_kib(pid):
    values = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


class Client:
    def __init__(self, port, cafile):
        context = ssl.create_default_context(cafile=cafile)
        self.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                                        server_hostname="localhost")
        self.sock.settimeout(600)
        self.buffer = b""
        self.tag = 0
        self.read_line()  # greeting

    def read_line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def command(self, text):
        """Sends a command; returns (seconds to the tagged OK, untagged lines)."""
        self.tag += 1
        tag = b"b%d" % self.tag
        started = time.monotonic()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        lines = []
        while True:
            line = self.read_line()
            if line.startswith(tag + b" "):
                elapsed = time.monotonic() - started
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError("%s -> %r" % (text, line))
                return elapsed, lines
            lines.append(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=2)
    opts = parser.parse_args()
    system = harness.System("sort100k")
    try:
        system.start_service()
        gateway = system.start_gateway()
        user, password = system.new_user("sort")
        mbox = os.path.join(system.dir, "bench.mbox")
        generate_mbox(mbox, opts.messages)
        started = time.monotonic()
        system.admin("import", "mbox", user, "INBOX", mbox, "--timeout=1h")
        import_seconds = time.monotonic() - started
        os.remove(mbox)
        pid = system.service.pid
        client = Client(gateway.imaps_port, system.cert)
        client.command("LOGIN %s %s" % (user, password))
        _, lines = client.command("SELECT INBOX")
        exists = [l for l in lines if l.endswith(b" EXISTS")]
        before = rss_kib(pid)
        results = {"messages": opts.messages, "exists": exists[0].decode() if exists else None,
                   "import_seconds": round(import_seconds, 1),
                   "service_rss_kib_before": before["VmRSS"],
                   "service_hwm_kib_before": before["VmHWM"], "commands": []}
        for command in ("UID SORT (REVERSE DATE) UTF-8 ALL", "UID SORT (SUBJECT) UTF-8 ALL",
                        "UID THREAD REFERENCES UTF-8 ALL"):
            for run in range(opts.runs):
                seconds, lines = client.command(command)
                answer = lines[0] if lines else b""
                after = rss_kib(pid)
                results["commands"].append({
                    "command": command, "run": run + 1, "seconds": round(seconds, 3),
                    "response_octets": len(answer),
                    "numbers": answer.count(b" ") - 1 if command.find("SORT") >= 0 else None,
                    "service_rss_kib_after": after["VmRSS"],
                    "service_hwm_kib_after": after["VmHWM"]})
        end = rss_kib(pid)
        results["service_rss_kib_end"] = end["VmRSS"]
        results["service_hwm_kib_end"] = end["VmHWM"]
        results["service_peak_growth_kib"] = end["VmHWM"] - before["VmRSS"]
        client.command("LOGOUT")
        print(json.dumps(results, indent=2))
    finally:
        system.stop()


if __name__ == "__main__":
    main()
