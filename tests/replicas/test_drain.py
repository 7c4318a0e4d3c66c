"""A gateway leaves a load balancer without its clients noticing: a real HAProxy
(send-proxy-v2, health checks on each gateway's /readyz) in front of two gateways,
two mailbox-service replicas and a real PostgreSQL server. One gateway is stopped
with SIGTERM (or asked to drain first, as a Kubernetes preStop hook does) while
clients append and idle through the balancer; no client sees an error it cannot
retry, every session on that gateway ends with "* BYE [UNAVAILABLE]", and every
acknowledged APPEND is stored exactly once."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import harness  # noqa: E402
from cluster import Cluster  # noqa: E402
from raw_client import ConnectionClosed, RawClient  # noqa: E402

CLUSTER = None
PASSWORD = "secret-pw"
GRACE_SECONDS = 2
DRAIN_TIMEOUT_SECONDS = 15


def setUpModule():
    global CLUSTER
    CLUSTER = Cluster("drain")
    CLUSTER.start_replica()
    CLUSTER.start_replica()


def tearDownModule():
    if CLUSTER:
        CLUSTER.stop()


def readyz(gateway):
    return harness.http_get(gateway.http_port, "/readyz")[0]


class Balancer(harness.HaProxy):
    """HAProxy as a cloud load balancer would be set up: PROXY protocol v2 to every
    gateway, and a health check of each gateway's /readyz every 250 ms."""

    def __init__(self, directory, gateways):
        self.port = harness.free_port()
        servers = "\n".join(
            "  server g%d 127.0.0.1:%d send-proxy-v2 check port %d inter 250ms fall 1 rise 2"
            % (i, g.imaps_port, g.http_port) for i, g in enumerate(gateways))
        config = "\n".join([
            "global",
            "  maxconn 500",
            "defaults",
            "  mode tcp",
            "  timeout connect 5s",
            "  timeout client 60s",
            "  timeout server 60s",
            "  retries 3",
            "  option redispatch",
            "frontend imaps",
            "  bind 127.0.0.1:%d" % self.port,
            "  default_backend gateways",
            "backend gateways",
            "  balance roundrobin",
            "  option httpchk GET /readyz",
            "  http-check expect status 200",
            servers,
            "",
        ])
        super().__init__(config, directory, [self.port], name="haproxy-drain")

    def wait_up(self, count):
        """Waits until `count` servers passed their health checks."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            # Servers start UP in HAProxy; one that failed its first check says so.
            time.sleep(1.0)
            if "DOWN" not in self.log() or self.log().count(" is UP") >= count:
                return
        raise AssertionError("haproxy did not see %d servers up:\n%s" % (count, self.log()))


def message(subject):
    return (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: %s\r\n"
            b"Message-ID: <%s@example.org>\r\n\r\nbody of %s\r\n"
            % (subject.encode(), subject.encode(), subject.encode()))


class Outcome:
    def __init__(self):
        self.lock = threading.Lock()
        self.acknowledged = []
        self.unretryable = []   # (what, line): answers a client cannot just retry
        self.byes = 0           # sessions ended with BYE [UNAVAILABLE]
        self.abrupt = []        # connections closed without a BYE
        self.sessions = 0

    def add(self, field, value):
        with self.lock:
            getattr(self, field).append(value)


def saw_drain_bye(client):
    return b"* BYE [UNAVAILABLE]" in b"".join(data for _, data in client.transcript)


class DrainBehindHaproxyTest(unittest.TestCase):
    def setUp(self):
        self.user = "drain%d" % (len(CLUSTER.gateways) + 1)
        CLUSTER.admin("user", "add", self.user, "--password", PASSWORD)
        flags = ("--trusted-proxies=127.0.0.1/32", "--shutdown-grace=%ds" % GRACE_SECONDS,
                 "--drain-timeout=%ds" % DRAIN_TIMEOUT_SECONDS)
        self.gateways = [CLUSTER.start_gateway(*flags, replicas=[0, 1]),
                         CLUSTER.start_gateway(*flags, replicas=[1, 0])]
        for gateway in self.gateways:
            gateway.wait_ready(timeout=20)
        self.balancer = Balancer(CLUSTER.dir, self.gateways)
        self.balancer.wait_up(2)

    def tearDown(self):
        self.balancer.stop()

    def connect(self):
        client = RawClient(self.balancer.port, "tls", cafile=CLUSTER.system.cert, timeout=30)
        client.login(self.user, PASSWORD)
        return client

    def run_clients(self, outcome, stop, appenders=6, idlers=3):
        """Clients that append (and check each answer) or idle, through the balancer,
        reconnecting whenever their session ends, until `stop` is set."""

        def ended(client):
            if client is None:
                return
            if saw_drain_bye(client):
                with outcome.lock:
                    outcome.byes += 1
            else:
                outcome.add("abrupt", client.format_transcript(600))
            client.close()

        def appender(index):
            client, i = None, 0
            while not stop.is_set():
                try:
                    if client is None:
                        client = self.connect()
                        with outcome.lock:
                            outcome.sessions += 1
                        client.ok("SELECT INBOX")
                    subject = "a%d-%d" % (index, i)
                    i += 1
                    body = message(subject)
                    tag = client.tag()
                    client.send(b"%s APPEND INBOX {%d+}\r\n%s\r\n"
                                % (tag.encode(), len(body), body))
                    _, tagged = client.read_tagged(tag, timeout=30)
                    if b" OK " in tagged:
                        outcome.add("acknowledged", subject)
                    elif b"[UNAVAILABLE]" not in tagged:
                        outcome.add("unretryable", ("APPEND", tagged))
                except (ConnectionClosed, OSError):
                    ended(client)
                    client = None
                    time.sleep(0.05)
            if client is not None:
                client.close()

        def idler(index):
            client = None
            while not stop.is_set():
                try:
                    if client is None:
                        client = self.connect()
                        with outcome.lock:
                            outcome.sessions += 1
                        client.ok("SELECT INBOX")
                    tag = client.tag()
                    client.send(b"%s IDLE\r\n" % tag.encode())
                    client.expect_continuation()
                    # New mail arrives all the time; stay in IDLE for a second.
                    deadline = time.monotonic() + 1.0
                    while time.monotonic() < deadline:
                        try:
                            client.read_line(timeout=max(0.01, deadline - time.monotonic()))
                        except TimeoutError:
                            break
                    client.send(b"DONE\r\n")
                    _, tagged = client.read_tagged(tag, timeout=30)
                    if b" OK " not in tagged:
                        outcome.add("unretryable", ("IDLE", tagged))
                except (ConnectionClosed, OSError):
                    ended(client)
                    client = None
                    time.sleep(0.05)
            if client is not None:
                client.close()

        threads = [threading.Thread(target=appender, args=(i,)) for i in range(appenders)]
        threads += [threading.Thread(target=idler, args=(i,)) for i in range(idlers)]
        for thread in threads:
            thread.start()
        return threads

    def check_stored(self, outcome):
        client = self.connect()
        client.ok("SELECT INBOX")
        untagged = client.ok("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])", timeout=60)
        client.close()
        counts = {}
        for line in untagged:
            match = re.search(rb"Subject: ([^\r\n]+)", line)
            if match:
                subject = match.group(1).decode()
                counts[subject] = counts.get(subject, 0) + 1
        missing = [s for s in outcome.acknowledged if s not in counts]
        doubled = [s for s, n in counts.items() if n > 1]
        self.assertEqual(missing, [], "acknowledged APPENDs lost")
        self.assertEqual(doubled, [])

    def drain_under_load(self, before_sigterm):
        victim = self.gateways[0]
        outcome = Outcome()
        stop = threading.Event()
        threads = self.run_clients(outcome, stop)
        try:
            time.sleep(3)
            before = outcome.sessions
            self.assertGreater(len(outcome.acknowledged), 10)
            before_sigterm(victim)
            start = time.monotonic()
            victim.process.send_signal(signal.SIGTERM)
            code = victim.process.wait(timeout=GRACE_SECONDS + DRAIN_TIMEOUT_SECONDS + 15)
            took = time.monotonic() - start
            # Clients go on through the other gateway for a while.
            time.sleep(3)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        self.assertEqual(code, 0)
        self.assertLess(took, GRACE_SECONDS + DRAIN_TIMEOUT_SECONDS)
        self.assertEqual(outcome.unretryable, [])
        # Every session the drained gateway held ended with BYE [UNAVAILABLE], none by
        # a bare close, and the clients were served again through the other gateway.
        self.assertEqual(outcome.abrupt, [])
        self.assertGreater(outcome.byes, 0)
        self.assertGreater(outcome.sessions, before)
        # The balancer saw the failing readiness and took the gateway out.
        self.assertRegex(self.balancer.log(), r"g0 is DOWN")
        self.check_stored(outcome)
        with open(victim.log_path, errors="replace") as f:
            log = f.read()
        self.assertIn("draining", log)
        sys.stderr.write("\n%s: %d APPENDs acknowledged, %d sessions ended with BYE "
                         "[UNAVAILABLE], %d sessions in all; the gateway exited %.1f s after "
                         "SIGTERM\n" % (self.id().rsplit(".", 1)[-1], len(outcome.acknowledged),
                                        outcome.byes, outcome.sessions, took))
        return outcome, took, log

    def test_sigterm_under_load(self):
        def nothing(victim):
            pass
        outcome, took, log = self.drain_under_load(nothing)
        # The grace period came first: readiness failed while the listeners accepted.
        self.assertGreaterEqual(took, GRACE_SECONDS)
        self.assertIn('"accepting_for_ms":', log)
        self.assertIn('"listeners_closed"', log)

    def test_prestop_drain_request_then_sigterm(self):
        def prestop(victim):
            # What a Kubernetes preStop hook runs: it returns after the grace period,
            # with readiness already failing; the sessions go on meanwhile.
            start = time.monotonic()
            result = subprocess.run(
                [CLUSTER.system.gateway_bin, "drain",
                 "--http-listen=127.0.0.1:%d" % victim.http_port,
                 "--shutdown-grace=%ds" % GRACE_SECONDS],
                capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertGreaterEqual(time.monotonic() - start, GRACE_SECONDS - 0.2)
            self.assertEqual(readyz(victim), 503)
            self.assertIsNone(victim.process.poll())
        outcome, took, log = self.drain_under_load(prestop)
        # SIGTERM after the request does not wait for a second grace period.
        self.assertLess(took, GRACE_SECONDS + DRAIN_TIMEOUT_SECONDS - 1)
        self.assertIn('"since_drain_request":true', log)


if __name__ == "__main__":
    unittest.main()
