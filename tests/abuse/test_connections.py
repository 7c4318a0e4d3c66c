"""Connection floods: clients that connect and never speak, and one address opening
more connections than it should. The gateway makes TLS state only once a ClientHello
starts to arrive, and caps connections globally and per client address; connections
over a cap get "* BYE" on the IMAP port and are closed before any handshake on the
IMAPS port. See docs/security.md, "Connections, TLS and the PROXY protocol"."""

import os
import select
import socket
import ssl
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abuse_util  # noqa: E402
from abuse_util import harness  # noqa: E402
from abuse_util import ConnectionClosed, RawClient  # noqa: E402

SYSTEM = None
PER_IP = 20  # the main gateway's --max-connections-per-ip in this module


def setUpModule():
    global SYSTEM
    SYSTEM = abuse_util.AbuseSystem(
        "connections", gateway_flags=("--max-connections-per-ip=%d" % PER_IP,))
    unittest.addModuleCleanup(SYSTEM.stop)


def refused(gateway, reason):
    """Connections refused for `reason`, summed over the listeners."""
    return harness.metric_total(gateway.http_port,
                                'imapd_gateway_connections_refused_total{reason="%s"}' % reason)


def silent_connection(port, source):
    s = socket.create_connection(("127.0.0.1", port), timeout=10,
                                 source_address=(source, 0))
    return s


def still_open(sockets):
    """True if the server has closed none of them (a closed one turns readable)."""
    readable, _, _ = select.select(sockets, [], [], 0)
    return not readable


class SilentTlsConnectionsTest(unittest.TestCase):
    def test_connections_that_never_send_a_client_hello_hold_little_memory(self):
        count = 300
        # 15 addresses x 20 connections: within the per-address cap, so every one is
        # held open, like a flood of 3,000 from many addresses.
        sources = ["127.0.1.%d" % i for i in range(1, 16)]
        sockets = []
        refused_before = refused(SYSTEM.gateway, "max_connections_per_ip")
        with SYSTEM.measure("300 idle TLS connections, no ClientHello") as m:
            try:
                for i in range(count):
                    sockets.append(silent_connection(SYSTEM.gateway.imaps_port,
                                                     sources[i % len(sources)]))
                    if i % 50 == 0:
                        m.sample()
                # Both workers have accepted everything and parked it.
                time.sleep(1.5)
                m.sample()
                self.assertTrue(still_open(sockets), "the gateway closed silent connections")
                grown = m.gateway_peak - m.gateway_before
                print("\n  300 silent TLS connections: gateway grew %d KiB (%.1f KiB each)"
                      % (grown, grown / count))
                # Before the fix each cost ~40 KiB (an SSL object and its buffers made
                # at accept): 12 MiB here. Now a socket, a timer and a coroutine frame.
                m.check(gateway_kib=count * 8, service_kib=1024)
                self.assertEqual(refused(SYSTEM.gateway, "max_connections_per_ip"),
                                 refused_before)
            finally:
                for s in sockets:
                    s.close()
        SYSTEM.assert_canary_alive()


class PerIpCapTest(unittest.TestCase):
    def test_connections_over_the_per_address_cap_get_bye(self):
        source = "127.0.0.5"
        before = refused(SYSTEM.gateway, "max_connections_per_ip")
        held = []
        with SYSTEM.measure("one address opens %d + 2 connections" % PER_IP) as m:
            try:
                for i in range(PER_IP):
                    c = SYSTEM.client(mode="plain", source=source)
                    self.assertTrue(c.greeting.startswith(b"* OK"), c.greeting)
                    held.append(c)
                # One more on the IMAP port: told why, then closed.
                over = SYSTEM.client(mode="plain", source=source)
                self.assertEqual(
                    over.greeting,
                    b"* BYE [UNAVAILABLE] Too many connections from your address (limit %d);"
                    b" close some and try again" % PER_IP)
                with self.assertRaises(ConnectionClosed):
                    over.read_line(timeout=5)
                over.close()
                # On the IMAPS port it is closed without a handshake.
                with self.assertRaises((ssl.SSLError, OSError)):
                    SYSTEM.client(mode="tls", source=source, timeout=5)
                self.assertEqual(refused(SYSTEM.gateway, "max_connections_per_ip"), before + 2)
                # Another address is counted on its own.
                other = SYSTEM.client(mode="tls", source="127.0.0.6")
                other.login(SYSTEM.user, SYSTEM.password)
                other.close()
                # The log names the address that hit the cap.
                self.assertTrue(abuse_util.wait_until(
                    lambda: "net: %s has %d connections open" % (source, PER_IP)
                    in SYSTEM.gateway.log()))
                # Once one closes, the address may connect again.
                held.pop().close()
                self.assertTrue(abuse_util.wait_until(
                    lambda: SYSTEM.client(mode="plain", source=source).greeting.startswith(
                        b"* OK"), timeout=5))
                m.check(gateway_kib=8 * 1024, service_kib=1024)
            finally:
                for c in held:
                    c.close()
        SYSTEM.assert_canary_alive()


class GlobalCapTest(unittest.TestCase):
    def test_connections_over_max_connections_get_bye(self):
        gateway = SYSTEM.system.start_gateway("--max-connections=4",
                                              "--max-connections-per-ip=0")
        rss_before = abuse_util.rss_kib(gateway.process.pid)
        held = []
        try:
            for i in range(4):
                c = RawClient(gateway.imap_port, "plain", cafile=SYSTEM.cert, timeout=10)
                self.assertTrue(c.greeting.startswith(b"* OK"), c.greeting)
                held.append(c)
            over = RawClient(gateway.imap_port, "plain", cafile=SYSTEM.cert, timeout=10)
            self.assertEqual(over.greeting, b"* BYE [UNAVAILABLE] This server has too many "
                                            b"connections; try again later")
            over.close()
            with self.assertRaises((ssl.SSLError, OSError)):
                RawClient(gateway.imaps_port, "tls", cafile=SYSTEM.cert, timeout=5)
            self.assertEqual(refused(gateway, "max_connections"), 2)
            self.assertIn("connection limit 4 reached", gateway.log())
            # Below the cap again, a client is served.
            held.pop().close()
            self.assertTrue(abuse_util.wait_until(
                lambda: RawClient(gateway.imap_port, "plain", timeout=10).greeting.startswith(
                    b"* OK"), timeout=5))
            self.assertLess(abuse_util.rss_kib(gateway.process.pid) - rss_before, 4096)
        finally:
            for c in held:
                c.close()
        SYSTEM.assert_canary_alive()


if __name__ == "__main__":
    unittest.main()
