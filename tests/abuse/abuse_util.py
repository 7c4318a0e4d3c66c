"""Shared pieces of the abuse suite: one running system per test module, memory
readings of the gateway and the service, a canary session that must keep working
through every attack, and the table of memory figures printed at the end of a run.

A test module typically does:

    SYSTEM = abuse_util.AbuseSystem("search")      # in setUpModule
    with SYSTEM.measure("SEARCH amplification") as m:
        ...attack...
        m.check(gateway_kib=64 * 1024)             # growth bounds, KiB
    SYSTEM.assert_canary_alive()
"""

import contextlib
import json
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_E2E = os.path.join(os.path.dirname(_HERE), "e2e")
sys.path.insert(0, _E2E)
import harness  # noqa: E402
from raw_client import RawClient, ConnectionClosed  # noqa: E402,F401


def rss_kib(pid):
    """Resident set size of a process, KiB (0 if it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def own_threads(pid):
    """Threads still named like the process: the service's own pools, not the threads
    gRPC starts (and names) as its executor grows on demand."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            name = f.read().strip()
        count = 0
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/comm" % (pid, task)) as f:
                count += f.read().strip() == name
        return count
    except OSError:
        return 0


def threads(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Measurement:
    """RSS of gateway and service before an attack, the peak seen while it ran (polled
    by sample()), and after. check() asserts growth bounds against the peak."""

    def __init__(self, system, name):
        self.system = system
        self.name = name
        self.gateway_before = rss_kib(system.gateway.process.pid)
        self.service_before = rss_kib(system.service.pid)
        self.gateway_peak = self.gateway_before
        self.service_peak = self.service_before
        self.gateway_after = None
        self.service_after = None

    def sample(self):
        self.gateway_peak = max(self.gateway_peak, rss_kib(self.system.gateway.process.pid))
        self.service_peak = max(self.service_peak, rss_kib(self.system.service.pid))

    def check(self, gateway_kib=None, service_kib=None):
        """Fails if either process grew by more than its bound (KiB) over its reading
        before the attack."""
        self.sample()
        if gateway_kib is not None and self.gateway_peak - self.gateway_before > gateway_kib:
            raise AssertionError("%s: gateway grew %d KiB (bound %d KiB)" % (
                self.name, self.gateway_peak - self.gateway_before, gateway_kib))
        if service_kib is not None and self.service_peak - self.service_before > service_kib:
            raise AssertionError("%s: service grew %d KiB (bound %d KiB)" % (
                self.name, self.service_peak - self.service_before, service_kib))

    def finish(self):
        self.sample()
        self.gateway_after = rss_kib(self.system.gateway.process.pid)
        self.service_after = rss_kib(self.system.service.pid)
        path = os.environ.get("ABUSE_REPORT")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps({
                    "attack": self.name,
                    "gateway_before_kib": self.gateway_before,
                    "gateway_peak_kib": self.gateway_peak,
                    "gateway_after_kib": self.gateway_after,
                    "service_before_kib": self.service_before,
                    "service_peak_kib": self.service_peak,
                    "service_after_kib": self.service_after,
                }) + "\n")


class AbuseSystem:
    """A mailbox service, one gateway, a victim-free canary user with a session that is
    checked after every attack, and an attacker user."""

    def __init__(self, name, service_flags=(), gateway_flags=()):
        self.system = harness.System("abuse-" + name)
        self.system.start_service(*service_flags)
        self.service = self.system.service
        self.gateway = self.system.start_gateway(*gateway_flags)
        self._start_canary()

    def _start_canary(self):
        """Once the gateway is ready: the canary and attacker users, and the canary's
        session with INBOX selected."""
        self.gateway.wait_ready()
        self.canary_user, self.canary_password = self.system.new_user("canary")
        self.user, self.password = self.system.new_user("attacker")
        self.canary = self.client()
        self.canary.login(self.canary_user, self.canary_password)
        self.canary.ok("SELECT INBOX")

    @property
    def cert(self):
        return self.system.cert

    def client(self, mode="tls", login=False, timeout=30, **kwargs):
        port = self.gateway.imaps_port if mode == "tls" else self.gateway.imap_port
        client = RawClient(port, mode, cafile=self.system.cert, timeout=timeout, **kwargs)
        if login:
            client.login(self.user, self.password)
        return client

    def assert_canary_alive(self):
        """The unrelated session still answers, and a fresh login still works."""
        if not self.canary.alive():
            raise AssertionError("the canary session stopped answering")
        fresh = self.client()
        try:
            fresh.login(self.canary_user, self.canary_password)
            fresh.ok("NOOP")
        finally:
            fresh.close()
        if self.gateway.process.poll() is not None:
            raise AssertionError("the gateway exited")
        if self.service.poll() is not None:
            raise AssertionError("the mailbox service exited")

    @contextlib.contextmanager
    def measure(self, name):
        m = Measurement(self, name)
        try:
            yield m
        finally:
            m.finish()

    def stop(self):
        try:
            self.canary.close()
        finally:
            self.system.stop()


def wait_until(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def print_report(path):
    if not path or not os.path.exists(path):
        print("abuse memory figures: none recorded")
        return
    rows = [json.loads(line) for line in open(path) if line.strip()]
    print("abuse memory figures (RSS, MiB): attack | gateway before/peak/after | "
          "service before/peak/after")
    for row in rows:
        print("  %-60s | %6.1f %6.1f %6.1f | %6.1f %6.1f %6.1f" % (
            row["attack"][:60],
            row["gateway_before_kib"] / 1024, row["gateway_peak_kib"] / 1024,
            row["gateway_after_kib"] / 1024,
            row["service_before_kib"] / 1024, row["service_peak_kib"] / 1024,
            row["service_after_kib"] / 1024))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        print_report(sys.argv[2])
