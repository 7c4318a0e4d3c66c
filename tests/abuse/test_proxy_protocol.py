"""The PROXY protocol end to end: a real HAProxy (Debian's haproxy, mode tcp,
send-proxy-v2 with health checks) in front of two gateways that trust it. Clients
connect to HAProxy from distinct loopback addresses (127.0.0.2, 127.0.0.3; the whole
127.0.0.0/8 is loopback), and the gateways must see those addresses, not HAProxy's:
in their log lines, in the per-address cap, and in the client_ip the mailbox service
throttles failed logins by. Also: a v1 header written by hand from a trusted address,
a trusted peer that sends no header, and a header from an untrusted peer (just bytes,
so BAD). See docs/security.md, "Connections, TLS and the PROXY protocol"."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abuse_util  # noqa: E402
from abuse_util import harness  # noqa: E402
from abuse_util import ConnectionClosed, RawClient  # noqa: E402

SYSTEM = None
HAPROXY = None
GATEWAYS = []
PER_IP = 3        # --max-connections-per-ip of the gateways behind HAProxy
IP_FAILURES = 3   # the service's --auth-ip-free-failures in this module


class HaProxy(harness.HaProxy):
    """HAProxy on two loopback ports in front of the gateways: implicit TLS to both,
    round robin, and plain IMAP to the first one."""

    def __init__(self, directory, gateways):
        self.imaps_port = harness.free_port()
        self.imap_port = harness.free_port()
        servers_tls = "\n".join(
            "  server g%d 127.0.0.1:%d send-proxy-v2 check check-send-proxy inter 500ms"
            % (i, g.imaps_port) for i, g in enumerate(gateways))
        # The plain frontend goes to the first gateway only, so that the per-address
        # counts of several clients meet on one gateway.
        config = "\n".join([
            "global",
            "  maxconn 500",
            "defaults",
            "  mode tcp",
            "  timeout connect 5s",
            "  timeout client 60s",
            "  timeout server 60s",
            "frontend imaps",
            "  bind 127.0.0.1:%d" % self.imaps_port,
            "  default_backend gateways_tls",
            "backend gateways_tls",
            "  balance roundrobin",
            servers_tls,
            "frontend imap",
            "  bind 127.0.0.1:%d" % self.imap_port,
            "  default_backend gateway_plain",
            "backend gateway_plain",
            "  server g0 127.0.0.1:%d send-proxy-v2 check check-send-proxy inter 500ms"
            % gateways[0].imap_port,
            "",
        ])
        super().__init__(config, directory, [self.imaps_port, self.imap_port])


def setUpModule():
    global SYSTEM, HAPROXY, GATEWAYS
    # The service's per-address throttle is on (the harness turns it off by default).
    SYSTEM = abuse_util.AbuseSystem(
        "proxy", service_flags=("--auth-ip-free-failures=%d" % IP_FAILURES,))
    unittest.addModuleCleanup(SYSTEM.stop)
    GATEWAYS = [SYSTEM.system.start_gateway(
        "--trusted-proxies=127.0.0.1", "--max-connections-per-ip=%d" % PER_IP,
        "--proxy-protocol-timeout=1s", "--gateway-id=behind-proxy-%d" % i) for i in range(2)]
    HAPROXY = HaProxy(SYSTEM.system.dir, GATEWAYS)
    unittest.addModuleCleanup(HAPROXY.stop)


def logs():
    return "".join(g.log() for g in GATEWAYS)


def metric(gateway, selector):
    return harness.metric_total(gateway.http_port, selector)


class BehindProxyMemory:
    """RSS growth of the two gateways behind HAProxy (SYSTEM.measure reads the
    module's main gateway, which the proxied clients do not reach)."""

    def __init__(self):
        self.before = [abuse_util.rss_kib(g.process.pid) for g in GATEWAYS]

    def check(self, gateway_kib):
        for g, before in zip(GATEWAYS, self.before):
            grown = abuse_util.rss_kib(g.process.pid) - before
            if grown > gateway_kib:
                raise AssertionError("gateway behind HAProxy grew %d KiB (bound %d KiB)"
                                     % (grown, gateway_kib))


def via_proxy(source, mode="tls", **kwargs):
    port = HAPROXY.imaps_port if mode == "tls" else HAPROXY.imap_port
    return RawClient(port, mode, cafile=SYSTEM.cert, source=source, timeout=15, **kwargs)


class ThroughHaProxyTest(unittest.TestCase):
    def test_logins_are_logged_with_the_clients_address(self):
        behind = BehindProxyMemory()
        with SYSTEM.measure("logins through HAProxy (PROXY v2)") as m:
            # Round robin: two logins reach both gateways.
            for _ in range(2):
                c = via_proxy("127.0.0.2")
                c.login(SYSTEM.user, SYSTEM.password)
                c.ok("NOOP")
                c.close()
            self.assertTrue(abuse_util.wait_until(
                lambda: all(any('"event":"login_succeeded"' in line
                                and '"client":"127.0.0.2:' in line
                                and '"proxy":"127.0.0.1:' in line
                                and '"user":"%s"' % SYSTEM.user in line
                                for line in g.log().splitlines())
                            for g in GATEWAYS)), logs()[-2000:])
            m.check(gateway_kib=8 * 1024, service_kib=8 * 1024)
            behind.check(gateway_kib=8 * 1024)
        SYSTEM.assert_canary_alive()

    def test_the_per_address_cap_counts_each_client_behind_the_proxy(self):
        held = []
        before = metric(GATEWAYS[0], 'imapd_gateway_connections_refused_total{reason="max_connections_per_ip"}')
        behind = BehindProxyMemory()
        with SYSTEM.measure("per-address cap behind HAProxy") as m:
            try:
                for _ in range(PER_IP):
                    c = via_proxy("127.0.0.2", mode="plain")
                    self.assertTrue(c.greeting.startswith(b"* OK"), c.greeting)
                    held.append(c)
                over = via_proxy("127.0.0.2", mode="plain")
                self.assertTrue(over.greeting.startswith(
                    b"* BYE [UNAVAILABLE] Too many connections from your address (limit %d)"
                    % PER_IP), over.greeting)
                over.close()
                # The same proxy, another client: its own count, served.
                other = via_proxy("127.0.0.3", mode="plain")
                self.assertTrue(other.greeting.startswith(b"* OK"), other.greeting)
                held.append(other)
                self.assertEqual(metric(GATEWAYS[0], 'imapd_gateway_connections_refused_total'
                                        '{reason="max_connections_per_ip"}'), before + 1)
                self.assertIn("net: 127.0.0.2 has %d connections open" % PER_IP,
                              GATEWAYS[0].log())
                m.check(gateway_kib=8 * 1024, service_kib=4 * 1024)
                behind.check(gateway_kib=8 * 1024)
            finally:
                for c in held:
                    c.close()
        SYSTEM.assert_canary_alive()

    def test_the_service_throttles_the_client_not_the_proxy(self):
        behind = BehindProxyMemory()
        with SYSTEM.measure("failed logins through HAProxy") as m:
            # IP_FAILURES failed logins from 127.0.0.4 (fewer per connection than the
            # gateway's --max-auth-failures).
            c = via_proxy("127.0.0.4")
            for _ in range(IP_FAILURES):
                _, tagged = c.command('LOGIN %s "wrong password"' % SYSTEM.user)
                self.assertIn(b"NO [AUTHENTICATIONFAILED]", tagged)
            c.close()
            # Now 127.0.0.4 is throttled, even with the right password...
            c = via_proxy("127.0.0.4")
            _, tagged = c.command('LOGIN %s %s' % (SYSTEM.user, SYSTEM.password))
            self.assertIn(b"Too many failed logins", tagged)
            c.close()
            # ...while another client behind the same proxy is not.
            c = via_proxy("127.0.0.5")
            c.login(SYSTEM.user, SYSTEM.password)
            c.close()
            self.assertIn('"client":"127.0.0.4:', logs())
            self.assertIn('"event":"login_failed"', logs())
            self.assertIn('"user":"%s"' % SYSTEM.user, logs())
            m.check(gateway_kib=8 * 1024, service_kib=8 * 1024)
            behind.check(gateway_kib=8 * 1024)
        # The canary logs in from 127.0.0.1, HAProxy's own address: had the service
        # counted the failures against the proxy, this fresh login would be throttled.
        SYSTEM.assert_canary_alive()

    def test_health_checks_are_served_not_refused(self):
        # HAProxy's check-send-proxy health checks arrive as v2 LOCAL every 500 ms.
        key = 'imapd_gateway_connections_refused_total{reason="proxy_header"}'
        before = [metric(gateway, key) for gateway in GATEWAYS]
        checks_before = metric(GATEWAYS[0], "imapd_gateway_connections_accepted_total")
        time.sleep(1.5)
        for gateway, count in zip(GATEWAYS, before):
            self.assertEqual(metric(gateway, key), count, gateway.log()[-2000:])
        self.assertGreater(metric(GATEWAYS[0], "imapd_gateway_connections_accepted_total"), checks_before)
        SYSTEM.assert_canary_alive()


class HandWrittenHeaderTest(unittest.TestCase):
    def test_v1_header_from_a_trusted_address_names_the_client(self):
        gateway = GATEWAYS[1]
        c = RawClient(gateway.imap_port, "plain", cafile=SYSTEM.cert, timeout=10,
                      preamble=b"PROXY TCP4 192.0.2.77 127.0.0.1 5555 143\r\n")
        self.assertTrue(c.greeting.startswith(b"* OK"), c.greeting)
        c.starttls()  # LOGIN needs TLS (LOGINDISABLED before it)
        _, tagged = c.command('LOGIN %s "wrong password"' % SYSTEM.user)
        self.assertIn(b"NO", tagged)
        c.close()
        self.assertTrue(abuse_util.wait_until(
            lambda: '"client":"192.0.2.77:5555","listener":"imap","proxy":"127.0.0.1:'
            in gateway.log() and '"event":"login_failed"' in gateway.log()))
        # The same header over implicit TLS: written before the handshake.
        c = RawClient(gateway.imaps_port, "tls", cafile=SYSTEM.cert, timeout=10,
                      preamble=b"PROXY TCP4 192.0.2.78 127.0.0.1 5556 993\r\n")
        c.login(SYSTEM.user, SYSTEM.password)
        c.close()
        self.assertTrue(abuse_util.wait_until(
            lambda: any('"event":"login_succeeded"' in line
                        and '"client":"192.0.2.78:5556","listener":"imaps","proxy":"127.0.0.1:'
                        in line for line in gateway.log().splitlines())))
        SYSTEM.assert_canary_alive()

    def test_trusted_peer_without_a_header_is_closed_with_nothing_sent(self):
        gateway = GATEWAYS[1]
        key = 'imapd_gateway_connections_refused_total{reason="proxy_header"}'
        before = metric(gateway, key)
        # Straight IMAP from the trusted address: not a header.
        c = RawClient(gateway.imap_port, "plain", timeout=10, read_greeting=False)
        c.send(b"a1 CAPABILITY\r\n")
        with self.assertRaises(ConnectionClosed):
            c.read_line(timeout=5)
        c.close()
        # Silence: closed at --proxy-protocol-timeout (1 s here).
        start = time.monotonic()
        c = RawClient(gateway.imap_port, "plain", timeout=10, read_greeting=False)
        with self.assertRaises(ConnectionClosed):
            c.read_line(timeout=8)
        self.assertLess(time.monotonic() - start, 5)
        c.close()
        self.assertEqual(metric(gateway, key), before + 2)
        self.assertIn("no PROXY header in time", gateway.log())
        SYSTEM.assert_canary_alive()

    def test_header_from_an_untrusted_address_is_not_honoured(self):
        # The module's main gateway trusts no proxy: the header is an IMAP line.
        c = SYSTEM.client(mode="plain")
        c.send(b"PROXY TCP4 192.0.2.99 127.0.0.1 5555 143\r\n")
        line = c.read_line(timeout=5)
        self.assertTrue(line.startswith(b"PROXY BAD"), line)
        c.close()
        # And a gateway that trusts 127.0.0.1 ignores a header from 127.0.0.9: the
        # connection is served as 127.0.0.9, the header answered BAD.
        c = RawClient(GATEWAYS[1].imap_port, "plain", cafile=SYSTEM.cert, timeout=10,
                      source="127.0.0.9")
        self.assertTrue(c.greeting.startswith(b"* OK"), c.greeting)
        c.send(b"PROXY TCP4 192.0.2.99 127.0.0.1 5555 143\r\n")
        self.assertTrue(c.read_line(timeout=5).startswith(b"PROXY BAD"))
        c.starttls()
        _, tagged = c.command('LOGIN %s "wrong password"' % SYSTEM.user)
        self.assertIn(b"NO", tagged)
        c.close()
        self.assertTrue(abuse_util.wait_until(
            lambda: '"client":"127.0.0.9:' in GATEWAYS[1].log()))
        self.assertNotIn("192.0.2.99", logs())
        SYSTEM.assert_canary_alive()


if __name__ == "__main__":
    unittest.main()
