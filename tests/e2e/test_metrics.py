"""GET /metrics of the real gateway and mailbox service after real traffic: both
pass `promtool check metrics`, and the counters and histograms moved by exactly what
the test did (logins that succeed and fail, TLS on both listeners, commands, an
APPEND, IDLE). Also /healthz and /readyz of the service, and `promtool check rules`
on the alert rules shipped in deploy/prometheus."""

import base64
import os
import re
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from raw_client import RawClient  # noqa: E402

SYSTEM = None
GATEWAY = None
HERE = os.path.dirname(os.path.abspath(__file__))
ALERTS = os.path.join(HERE, "..", "..", "deploy", "prometheus", "alerts.yml")
MESSAGE = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: metrics\r\n"
           b"Message-ID: <metrics@example.org>\r\n\r\nHello.\r\n")
MAILBOX = 'service="mailbox.v1.Mailbox"'


def setUpModule():
    global SYSTEM, GATEWAY
    SYSTEM = harness.System("metrics")
    unittest.addModuleCleanup(SYSTEM.stop)
    SYSTEM.start_service()
    GATEWAY = SYSTEM.start_gateway()


get = harness.http_get
scrape = harness.scrape_metrics


def promtool(*args, stdin=None):
    return subprocess.run(["promtool"] + list(args), input=stdin, capture_output=True,
                          text=True, timeout=60)


def gateway_port():
    return GATEWAY.http_port


def service_port():
    return SYSTEM.service_http_port


class MetricsTest(unittest.TestCase):
    def delta(self, before, after, key):
        return after.get(key, 0) - before.get(key, 0)

    def assertDelta(self, before, after, key, expected):
        self.assertEqual(self.delta(before, after, key), expected,
                         "%s: %s -> %s" % (key, before.get(key), after.get(key)))

    def test_both_endpoints_pass_promtool_and_count_what_the_clients_did(self):
        self.assertNotEqual(gateway_port(), 0)
        self.assertNotEqual(service_port(), 0)
        gw_before, _ = scrape(gateway_port())
        svc_before, _ = scrape(service_port())
        user, password = SYSTEM.new_user("metrics")

        # A failed and a successful LOGIN over IMAPS.
        bad = RawClient(GATEWAY.imaps_port, "tls", cafile=SYSTEM.cert)
        _, tagged = bad.command('LOGIN "%s" "wrong-password"' % user)
        self.assertIn(b" NO ", tagged)
        bad.ok("LOGOUT")
        imaps = RawClient(GATEWAY.imaps_port, "tls", cafile=SYSTEM.cert)
        imaps.login(user, password)
        imaps.ok("SELECT INBOX")
        imaps.send(b"a1 APPEND INBOX {%d+}\r\n%s\r\n" % (len(MESSAGE), MESSAGE))
        _, tagged = imaps.read_tagged("a1")
        self.assertIn(b"a1 OK", tagged)
        imaps.ok("NOOP")
        imaps.ok("FETCH 1 (FLAGS BODY.PEEK[HEADER])")

        # STARTTLS on the plain listener, then AUTHENTICATE PLAIN, then IDLE.
        plain = RawClient(GATEWAY.imap_port, "plain", cafile=SYSTEM.cert)
        plain.starttls()
        plain.ok("AUTHENTICATE PLAIN " +
                 base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode())
        plain.ok("SELECT INBOX")
        plain.send(b"i1 IDLE\r\n")
        lines = plain.expect_continuation()
        self.assertTrue(lines[-1].startswith(b"+ "), lines)

        # While idling: the gauges say so.
        gw_idle, _ = scrape(gateway_port())
        svc_idle, _ = scrape(service_port())
        self.assertEqual(gw_idle["imapd_gateway_sessions_idling"], 1)
        self.assertEqual(gw_idle['imapd_gateway_connections_open{listener="imaps"}'],
                         gw_before['imapd_gateway_connections_open{listener="imaps"}'] + 1)
        self.assertEqual(gw_idle['imapd_gateway_connections_open{listener="starttls"}'],
                         gw_before['imapd_gateway_connections_open{listener="starttls"}'] + 1)
        self.assertGreaterEqual(svc_idle["imapd_mailbox_feed_subscribers"], 1)
        # Both sessions selected INBOX: each worker with one of them subscribes to it.
        subscribed = [value for key, value in gw_idle.items()
                      if key.startswith("imapd_gateway_feed_subscribed_mailboxes{")]
        self.assertEqual(len(subscribed), 2)  # --workers=2
        self.assertGreaterEqual(sum(subscribed), 1)

        plain.send(b"DONE\r\n")
        _, tagged = plain.read_tagged("i1")
        self.assertIn(b"i1 OK", tagged)
        plain.ok("LOGOUT")
        imaps.ok("LOGOUT")

        gw_after, gw_text = scrape(gateway_port())
        svc_after, svc_text = scrape(service_port())

        # Both expositions are valid Prometheus text and pass promtool's lint.
        for name, text in (("gateway", gw_text), ("service", svc_text)):
            result = promtool("check", "metrics", stdin=text)
            self.assertEqual(result.returncode, 0,
                             "%s: %s%s" % (name, result.stdout, result.stderr))

        # Gateway: connections and TLS per listener.
        self.assertDelta(gw_before, gw_after,
                         'imapd_gateway_connections_accepted_total{listener="imaps"}', 2)
        self.assertDelta(gw_before, gw_after,
                         'imapd_gateway_connections_accepted_total{listener="starttls"}', 1)
        self.assertDelta(gw_before, gw_after,
                         'imapd_gateway_tls_handshakes_total{listener="imaps",outcome="success"}', 2)
        self.assertDelta(gw_before, gw_after,
                         'imapd_gateway_tls_handshakes_total{listener="starttls",outcome="success"}',
                         1)
        self.assertDelta(gw_before, gw_after, 'imapd_gateway_tls_handshake_duration_seconds_count'
                         '{listener="imaps",outcome="success"}', 2)
        # Logins per mechanism and outcome.
        self.assertDelta(gw_before, gw_after,
                         'imapd_gateway_logins_total{mechanism="LOGIN",outcome="failure"}', 1)
        self.assertDelta(gw_before, gw_after,
                         'imapd_gateway_logins_total{mechanism="LOGIN",outcome="success"}', 1)
        self.assertDelta(gw_before, gw_after,
                         'imapd_gateway_logins_total{mechanism="PLAIN",outcome="success"}', 1)
        # Commands: counted per family, and each has a latency observation.
        for command, count in (("LOGIN", 2), ("AUTHENTICATE", 1), ("SELECT", 2), ("APPEND", 1),
                               ("NOOP", 1), ("FETCH", 1), ("IDLE", 1), ("STARTTLS", 1),
                               ("LOGOUT", 3)):
            self.assertDelta(gw_before, gw_after,
                             'imapd_gateway_commands_total{command="%s"}' % command, count)
            self.assertDelta(gw_before, gw_after,
                             'imapd_gateway_command_duration_seconds_count{command="%s"}'
                             % command, count)
            self.assertDelta(gw_before, gw_after,
                             'imapd_gateway_command_duration_seconds_bucket{command="%s",'
                             'le="+Inf"}' % command, count)
        self.assertGreater(gw_after['imapd_gateway_command_duration_seconds_sum{command="IDLE"}'],
                           0)
        self.assertGreater(self.delta(gw_before, gw_after, "imapd_gateway_received_bytes_total"),
                           len(MESSAGE))
        self.assertEqual(gw_after["imapd_gateway_sessions_idling"], 0)
        self.assertEqual(gw_after["imapd_gateway_ready"], 1)
        # The gateway's calls to the service, timed per method by its interceptor.
        self.assertDelta(gw_before, gw_after, 'imapd_gateway_store_rpc_duration_seconds_count'
                         '{%s,method="Authenticate"}' % MAILBOX, 3)
        self.assertDelta(gw_before, gw_after,
                         'imapd_gateway_store_rpc_duration_seconds_count{%s,method="Append"}'
                         % MAILBOX, 1)
        self.assertDelta(gw_before, gw_after,
                         'imapd_gateway_store_rpcs_total{%s,method="Append",code="OK"}'
                         % MAILBOX, 1)
        self.assertDelta(gw_before, gw_after, 'imapd_gateway_store_rpcs_total'
                         '{%s,method="Authenticate",code="UNAUTHENTICATED"}' % MAILBOX, 1)

        # Service: the same calls seen from the server, and what they did in the store.
        self.assertDelta(svc_before, svc_after,
                         'imapd_mailbox_rpc_duration_seconds_count{%s,method="Append"}'
                         % MAILBOX, 1)
        self.assertDelta(svc_before, svc_after,
                         'imapd_mailbox_rpcs_total{%s,method="Authenticate",code="OK"}'
                         % MAILBOX, 2)
        self.assertDelta(svc_before, svc_after,
                         'imapd_mailbox_logins_total{mechanism="password",outcome="success"}', 2)
        self.assertDelta(svc_before, svc_after,
                         'imapd_mailbox_logins_total{mechanism="password",outcome="failure"}', 1)
        self.assertDelta(svc_before, svc_after,
                         'imapd_mailbox_store_operation_duration_seconds_count'
                         '{operation="Append"}', 1)
        self.assertGreaterEqual(
            self.delta(svc_before, svc_after,
                       'imapd_mailbox_store_transactions_total{outcome="committed"}'), 1)
        self.assertGreaterEqual(
            self.delta(svc_before, svc_after, "imapd_mailbox_sqlite_durable_commits_total"), 1)
        self.assertEqual(svc_after["imapd_mailbox_ready"], 1)
        self.assertGreater(svc_after["process_resident_memory_bytes"], 0)
        # The user was created with mailbox-admin: the Admin service is timed too.
        self.assertGreaterEqual(
            self.delta(svc_before, svc_after, 'imapd_mailbox_rpc_duration_seconds_count'
                       '{service="mailbox.v1.Admin",method="CreateUser"}'), 1)

    def test_pending_changes_wait_for_the_quiet_session_and_go_with_its_next_command(self):
        user, password = SYSTEM.new_user("pending")
        before, _ = scrape(gateway_port())
        quiet = RawClient(GATEWAY.imaps_port, "tls", cafile=SYSTEM.cert)
        quiet.login(user, password)
        quiet.ok("SELECT INBOX")
        writer = RawClient(GATEWAY.imaps_port, "tls", cafile=SYSTEM.cert)
        writer.login(user, password)
        for i in range(3):
            writer.send(b"a%d APPEND INBOX {%d+}\r\n%s\r\n" % (i, len(MESSAGE), MESSAGE))
            _, tagged = writer.read_tagged("a%d" % i)
            self.assertIn(b" OK", tagged)
        # The quiet session has not asked for anything: the three new messages wait in
        # its queue (the feed delivers them asynchronously, hence the poll).
        key = "imapd_gateway_pending_changes"
        deadline = time.monotonic() + 10
        while True:
            waiting, _ = scrape(gateway_port())
            if waiting[key] - before[key] >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertGreaterEqual(waiting[key] - before[key], 3, "%s -> %s" % (before[key],
                                                                             waiting[key]))
        untagged, _ = quiet.command("NOOP")
        self.assertIn(b"* 3 EXISTS", untagged)
        after, _ = scrape(gateway_port())
        self.assertEqual(after[key], before[key])
        for client in (quiet, writer):
            client.ok("LOGOUT")
            client.close()

    def test_service_health_and_readiness(self):
        self.assertEqual(get(service_port(), "/healthz")[0], 200)
        status, _, body = get(service_port(), "/readyz")
        self.assertEqual((status, body), (200, "ready\n"))
        self.assertEqual(get(service_port(), "/nope")[0], 404)
        request = urllib.request.Request("http://127.0.0.1:%d/metrics" % service_port(),
                                         method="POST", data=b"")
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        self.assertEqual(caught.exception.code, 405)

    def test_every_metric_is_documented(self):
        with open(os.path.join(HERE, "..", "..", "docs", "operations.md")) as f:
            docs = f.read()
        documented = set(re.findall(r"`((?:imapd_[a-z_]+|process_[a-z_]+))`", docs))
        for port in (gateway_port(), service_port()):
            _, text = scrape(port)
            for name in re.findall(r"^# TYPE (\S+) ", text, re.M):
                self.assertIn(name, documented, "%s is not in docs/operations.md" % name)

    def test_alert_rules_pass_promtool(self):
        result = promtool("check", "rules", ALERTS)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("SUCCESS", result.stdout)


if __name__ == "__main__":
    unittest.main()
