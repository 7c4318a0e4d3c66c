"""The structured logs of the real gateway and mailbox service (docs/operations.md,
"Logs"): every line on their stderr is one JSON object (json.loads), each event the
operators alert on appears with its fields, the logger's rate limit bounds a flood
of refusals, no password reaches the log, and the fail2ban example filter
(deploy/fail2ban/imapd.conf), run by the real fail2ban-regex on the gateway's own
lines, matches exactly the failed logins and extracts the right client address,
also one named by a PROXY header, IPv4 and IPv6."""

import imaplib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "e2e"))
import harness  # noqa: E402
from raw_client import RawClient, ConnectionClosed  # noqa: E402

FILTER = None
SECRET = "Pw-s3cret-never-logged"
SYSTEM = None
SERVICE_ERR = None
DIRECT = None      # a gateway clients reach directly
DIRECT_ERR = None
PROXIED = None     # a gateway behind a (hand-written) PROXY protocol proxy
PROXIED_ERR = None
FLOOD = None       # a gateway with a small log rate limit
FLOOD_ERR = None
USER = PASSWORD = None  # never fails a login: the service throttles after 2 failures
THROTTLED_USER = None
FAILING_USER = None     # test_failed_login_...
BANNED_USER = None      # the fail2ban test's failures
ISSUER = None           # the identity provider of OAuth bearer tokens


def runfile(path):
    srcdir = os.environ.get("TEST_SRCDIR")
    if srcdir:
        return os.path.join(srcdir, "imapd", path)
    return os.path.join(os.path.dirname(os.path.dirname(_HERE)), path)


def events(path):
    """Every line of a stderr log, parsed; fails on a line that is not JSON."""
    out = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            text = raw.decode("utf-8")  # the logger writes valid UTF-8 only
            try:
                value = json.loads(text)
            except ValueError as e:
                raise AssertionError("%s:%d is not JSON (%s): %r" % (path, number, e, text))
            if not isinstance(value, dict):
                raise AssertionError("%s:%d is not an object: %r" % (path, number, text))
            out.append(value)
    return out


def wait_for(path, predicate, timeout=10.0):
    """The first event of `path` for which predicate is true, waiting for it."""
    deadline = time.monotonic() + timeout
    while True:
        for event in events(path):
            if predicate(event):
                return event
        if time.monotonic() > deadline:
            raise AssertionError("no such event in %s:\n%s" % (path, open(path).read()[-3000:]))
        time.sleep(0.05)


def named(name, **fields):
    def predicate(event):
        return event.get("event") == name and all(event.get(k) == v for k, v in fields.items())
    return predicate


def setUpModule():
    global SYSTEM, SERVICE_ERR, DIRECT, DIRECT_ERR, PROXIED, PROXIED_ERR, FLOOD, FLOOD_ERR
    global USER, PASSWORD, THROTTLED_USER, FAILING_USER, BANNED_USER, FILTER
    global ISSUER
    FILTER = runfile("deploy/fail2ban/imapd.conf")
    SYSTEM = harness.System("logs")
    SERVICE_ERR = os.path.join(SYSTEM.dir, "service.err")
    # A user whose pair is throttled after two failures (the harness frees 100000).
    ISSUER = harness.OAuthIssuer(SYSTEM.dir)
    SYSTEM.start_service("--auth-user-free-failures=2", "--log-format=json",
                         *ISSUER.service_flags(), stderr_path=SERVICE_ERR)
    USER, PASSWORD = SYSTEM.new_user("alice")
    THROTTLED_USER, _ = SYSTEM.new_user("mallory")
    FAILING_USER, _ = SYSTEM.new_user("carol")
    BANNED_USER, _ = SYSTEM.new_user("bob")
    DIRECT_ERR = os.path.join(SYSTEM.dir, "direct.err")
    DIRECT = SYSTEM.start_gateway("--gateway-id=gw-direct", "--log-format=json",
                                  "--drain-timeout=1s", "--oauth=true",
                                  stderr_path=DIRECT_ERR)
    PROXIED_ERR = os.path.join(SYSTEM.dir, "proxied.err")
    PROXIED = SYSTEM.start_gateway(
        "--gateway-id=gw-proxied", "--trusted-proxies=127.0.0.1/32",
        "--max-connections-per-ip=1", "--proxy-protocol-timeout=1s",
        "--unauthenticated-timeout=2s", stderr_path=PROXIED_ERR)
    FLOOD_ERR = os.path.join(SYSTEM.dir, "flood.err")
    FLOOD = SYSTEM.start_gateway("--gateway-id=gw-flood", "--trusted-proxies=127.0.0.1/32",
                                 "--log-rate-limit=3", stderr_path=FLOOD_ERR)


def tearDownModule():
    if SYSTEM is not None:
        SYSTEM.stop()


def proxied_client(source, port=None, mode="plain"):
    """A connection to PROXIED from `source` (IPv4 or IPv6) as a PROXY v1 header says."""
    family = "TCP6" if ":" in source else "TCP4"
    dest = "::1" if family == "TCP6" else "127.0.0.1"
    header = "PROXY %s %s %s 40001 143\r\n" % (family, source, dest)
    return RawClient(port or PROXIED.imap_port, mode, cafile=SYSTEM.cert, timeout=10,
                     preamble=header.encode())


class GatewayEventsTest(unittest.TestCase):
    def test_started_is_logged_and_the_banner_stays_on_stdout(self):
        started = wait_for(DIRECT_ERR, named("started"))
        self.assertEqual(started["gateway_id"], "gw-direct")
        self.assertEqual(started["imaps_port"], DIRECT.imaps_port)
        self.assertEqual(started["imap_port"], DIRECT.imap_port)
        self.assertEqual(started["store"], SYSTEM.service_target)
        self.assertEqual(started["level"], "info")
        # The start-up line tools read stays on stdout; no log line goes there.
        stdout = DIRECT.log()
        self.assertIn("IMAPS port %d" % DIRECT.imaps_port, stdout)
        self.assertNotIn('"event"', stdout)
        # The ports file, written with Boost.JSON.
        with open(os.path.join(SYSTEM.dir, "gateway0.ports")) as f:
            self.assertEqual(json.load(f), {"imaps": DIRECT.imaps_port,
                                            "imap": DIRECT.imap_port,
                                            "http": DIRECT.http_port})

    def test_common_fields_of_every_line(self):
        c = RawClient(DIRECT.imaps_port, "tls", cafile=SYSTEM.cert)
        c.ok("NOOP")
        c.close()
        wait_for(DIRECT_ERR, named("connection_closed"))
        for event in events(DIRECT_ERR):
            self.assertRegex(event["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(event["level"], ("info", "warning", "error"))
            self.assertEqual(event["gateway_id"], "gw-direct")
            self.assertEqual(list(event)[:4], ["ts", "level", "event", "gateway_id"])

    def test_a_session_from_open_to_logout(self):
        c = RawClient(DIRECT.imaps_port, "tls", cafile=SYSTEM.cert)
        local_port = c.sock.getsockname()[1]
        client = "127.0.0.1:%d" % local_port
        c.login(USER, PASSWORD)
        c.ok("SELECT INBOX")
        c.ok("NOOP")
        c.ok("LOGOUT")
        c.close()
        opened = wait_for(DIRECT_ERR, named("connection_opened", client=client))
        self.assertEqual(opened["listener"], "imaps")
        self.assertIsInstance(opened["session"], int)
        session = opened["session"]
        ok = wait_for(DIRECT_ERR, named("login_succeeded", session=session))
        self.assertEqual(ok["user"], USER)
        self.assertEqual(ok["mechanism"], "LOGIN")
        self.assertEqual(ok["client"], client)
        closed = wait_for(DIRECT_ERR, named("connection_closed", session=session))
        self.assertEqual(closed["end"], "logout")
        self.assertEqual(closed["user"], USER)
        self.assertEqual(closed["commands"], 4)
        self.assertGreater(closed["bytes_in"], 30)
        self.assertGreater(closed["bytes_out"], 100)
        self.assertGreaterEqual(closed["duration_ms"], 0)
        self.assertEqual(closed["listener"], "imaps")

    def test_client_closed_and_login_timeout(self):
        c = RawClient(DIRECT.imap_port, "plain")
        port = c.sock.getsockname()[1]
        c.ok("CAPABILITY")
        c.close()
        closed = wait_for(DIRECT_ERR, named("connection_closed", client="127.0.0.1:%d" % port))
        self.assertEqual(closed["end"], "client_closed")
        self.assertEqual(closed["listener"], "imap")
        self.assertEqual(closed["commands"], 1)
        self.assertNotIn("user", closed)
        # PROXIED closes unauthenticated connections after 2 s.
        c = proxied_client("192.0.2.40")
        with self.assertRaises(ConnectionClosed):
            while True:
                c.read_line(timeout=8)  # the BYE, then the end
        c.close()
        closed = wait_for(PROXIED_ERR, named("connection_closed", client="192.0.2.40:40001"))
        self.assertEqual(closed["end"], "login_timeout")
        self.assertEqual(closed["proxy"].split(":")[0], "127.0.0.1")

    def test_failed_login_names_the_reason_and_never_the_password(self):
        c = RawClient(DIRECT.imaps_port, "tls", cafile=SYSTEM.cert)
        port = c.sock.getsockname()[1]
        _, tagged = c.command('LOGIN %s "%s"' % (FAILING_USER, SECRET))
        self.assertIn(b"NO", tagged)
        # AUTHENTICATE PLAIN with the secret too.
        import base64
        token = base64.b64encode(("\0%s\0%s" % (FAILING_USER, SECRET)).encode()).decode()
        _, tagged = c.command("AUTHENTICATE PLAIN %s" % token)
        self.assertIn(b"NO", tagged)
        c.close()
        client = "127.0.0.1:%d" % port
        failed = wait_for(DIRECT_ERR, named("login_failed", client=client, mechanism="LOGIN"))
        self.assertEqual(failed["user"], FAILING_USER)
        self.assertEqual(failed["reason"], "bad_credentials")
        self.assertEqual(failed["level"], "warning")
        plain = wait_for(DIRECT_ERR, named("login_failed", client=client, mechanism="PLAIN"))
        self.assertEqual(plain["reason"], "bad_credentials")
        wait_for(DIRECT_ERR, named("connection_closed", client=client))
        for path in (DIRECT_ERR, SERVICE_ERR, DIRECT.log_path,
                     os.path.join(SYSTEM.dir, "service.log")):
            with open(path, "rb") as f:
                data = f.read()
            self.assertNotIn(SECRET.encode(), data, path)
            self.assertNotIn(token.encode(), data, path)

    def test_throttled_login_on_both_sides(self):
        c = RawClient(DIRECT.imaps_port, "tls", cafile=SYSTEM.cert)
        port = c.sock.getsockname()[1]
        for _ in range(3):
            _, tagged = c.command('LOGIN %s "wrong"' % THROTTLED_USER)
            self.assertIn(b"NO", tagged)
        c.close()
        client = "127.0.0.1:%d" % port
        throttled = wait_for(DIRECT_ERR, named("login_failed", client=client,
                                               reason="throttled"))
        self.assertEqual(throttled["user"], THROTTLED_USER)
        self.assertGreater(throttled["retry_after_ms"], 0)
        service = wait_for(SERVICE_ERR, named("login_throttled", user=THROTTLED_USER))
        self.assertEqual(service["client"], "127.0.0.1")
        self.assertGreater(service["retry_after_ms"], 0)
        self.assertEqual(service["replica"], socket.gethostname())

    def test_hostile_user_name_stays_in_its_field(self):
        c = RawClient(DIRECT.imaps_port, "tls", cafile=SYSTEM.cert)
        port = c.sock.getsockname()[1]
        # A quoted string with an escaped quote and backslash (RFC 3501 §4.3) that
        # tries to close the JSON string and add fields; then a literal with a
        # newline, a control character and bytes that are not UTF-8.
        _, tagged = c.command(r'LOGIN "x\",\"reason\":\"ok\\" "pw"')
        self.assertIn(b"NO", tagged)
        tag = c.tag()
        name = b'evil\r\n{"event":"login_succeeded"}\x01\xff\xfe'
        c.send(b"%s LOGIN {%d}\r\n" % (tag.encode(), len(name)))
        self.assertTrue(c.read_line().startswith(b"+"))
        c.send(name + b' "pw"\r\n')
        c.read_tagged(tag)
        c.close()
        client = "127.0.0.1:%d" % port
        wait_for(DIRECT_ERR, named("connection_closed", client=client))
        mine = [e for e in events(DIRECT_ERR) if e.get("client") == client]
        failures = [e for e in mine if e["event"] == "login_failed"]
        self.assertEqual(len(failures), 2, mine)
        self.assertEqual(failures[0]["user"], 'x","reason":"ok\\')
        self.assertEqual(failures[0]["reason"], "bad_credentials")
        self.assertEqual(failures[1]["user"],
                         'evil\r\n{"event":"login_succeeded"}\x01\ufffd\ufffd')
        self.assertFalse(any(e["event"] == "login_succeeded" for e in mine))

    def test_tls_handshake_failure(self):
        s = socket.create_connection(("127.0.0.1", DIRECT.imaps_port), timeout=10)
        port = s.getsockname()[1]
        s.sendall(b"this is not a TLS ClientHello\r\n" * 4)
        try:
            s.recv(100)
        except OSError:
            pass
        s.close()
        failed = wait_for(DIRECT_ERR, named("tls_handshake_failed",
                                            client="127.0.0.1:%d" % port))
        self.assertEqual(failed["listener"], "imaps")
        self.assertTrue(failed["reason"])
        self.assertEqual(failed["level"], "warning")

    def test_proxied_client_ipv4_and_ipv6(self):
        c = proxied_client("192.0.2.41")
        c.starttls()
        c.login(USER, PASSWORD)
        c.close()
        ok = wait_for(PROXIED_ERR, named("login_succeeded", client="192.0.2.41:40001"))
        self.assertTrue(ok["proxy"].startswith("127.0.0.1:"), ok)
        c = proxied_client("2001:db8::41")
        c.starttls()
        c.login(USER, PASSWORD)
        c.close()
        ok = wait_for(PROXIED_ERR, named("login_succeeded", client="[2001:db8::41]:40001"))
        self.assertEqual(ok["gateway_id"], "gw-proxied")

    def test_refusals_per_ip_and_bad_proxy_header(self):
        held = proxied_client("192.0.2.42")
        try:
            over = proxied_client("192.0.2.42")
            over.close()
            refused = wait_for(PROXIED_ERR, named("connection_refused", reason="per_ip",
                                                  client="192.0.2.42:40001"))
            self.assertEqual(refused["limit"], 1)
            self.assertEqual(refused["listener"], "imap")
        finally:
            held.close()
        s = socket.create_connection(("127.0.0.1", PROXIED.imap_port), timeout=10)
        port = s.getsockname()[1]
        s.sendall(b"a1 CAPABILITY\r\n")
        try:
            self.assertEqual(s.recv(100), b"")  # closed with nothing sent
        except ConnectionResetError:
            pass  # closed with our line unread
        finally:
            s.close()
        refused = wait_for(PROXIED_ERR, named("connection_refused", reason="proxy_header",
                                              client="127.0.0.1:%d" % port))
        self.assertTrue(refused["detail"])

    def test_a_flood_of_refusals_is_rate_limited(self):
        # FLOOD trusts 127.0.0.1 as a proxy and writes 3 lines a second per event:
        # 20 connections without a PROXY header make 20 refusals within a second.
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", FLOOD.imap_port), timeout=10)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            s.close()
        summary = wait_for(FLOOD_ERR, named("log_suppressed",
                                            suppressed_event="connection_refused"))
        self.assertEqual(summary["level"], "warning")
        self.assertEqual(summary["limit_per_second"], 3)
        # Every refusal is either written or counted (the count of a second that
        # is over is written within about a second).
        deadline = time.monotonic() + 10
        while True:
            refused = [e for e in events(FLOOD_ERR) if e["event"] == "connection_refused"]
            suppressed = sum(e["suppressed"] for e in events(FLOOD_ERR)
                             if e["event"] == "log_suppressed"
                             and e["suppressed_event"] == "connection_refused")
            if len(refused) + suppressed == 20 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(len(refused) + suppressed, 20, events(FLOOD_ERR))
        self.assertLess(len(refused), 20)
        # Within any one second at most 3 lines of the event were written.
        times = sorted(e["ts"] for e in refused)
        for i in range(len(times) - 3):
            self.assertNotEqual(times[i][:19], times[i + 3][:19], times)

    def test_certificate_reload_on_sighup(self):
        DIRECT.process.send_signal(signal.SIGHUP)
        reload = wait_for(DIRECT_ERR, lambda e: e["event"] == "cert_reload"
                          and e.get("generation", 0) >= 2)
        self.assertEqual(reload["result"], "ok")
        self.assertEqual(reload["cert_file"], SYSTEM.cert)


class Fail2banTest(unittest.TestCase):
    """fail2ban-regex with deploy/fail2ban/imapd.conf on the gateways' own lines."""

    def test_the_filter_matches_exactly_the_failed_logins(self):
        # Two failures and a success from 127.0.0.1, a failure from a client named by
        # a PROXY header over IPv4 and one over IPv6.
        c = RawClient(DIRECT.imaps_port, "tls", cafile=SYSTEM.cert)
        for _ in range(2):
            _, tagged = c.command('LOGIN %s "bad-one"' % BANNED_USER)
            self.assertIn(b"NO", tagged)
        c.login(USER, PASSWORD)
        c.close()
        for source in ("198.51.100.7", "2001:db8::77"):
            p = proxied_client(source)
            p.starttls()
            _, tagged = p.command('LOGIN %s "bad-two"' % BANNED_USER)
            self.assertIn(b"NO", tagged)
            p.close()
        wait_for(PROXIED_ERR, named("login_failed", client="[2001:db8::77]:40001"))
        lines = []
        for path in (DIRECT_ERR, PROXIED_ERR):
            with open(path) as f:
                lines += [line for line in f if line.strip()]
        records = [json.loads(line) for line in lines]
        expected = [record["client"].rsplit(":", 1)[0].strip("[]")
                    for record in records
                    if record["event"] == "login_failed"
                    and record["reason"] in ("bad_credentials", "throttled")]
        self.assertIn("198.51.100.7", expected)
        self.assertIn("2001:db8::77", expected)
        self.assertGreaterEqual(expected.count("127.0.0.1"), 2)
        log = os.path.join(SYSTEM.dir, "fail2ban-input.log")
        with open(log, "w") as f:
            f.writelines(lines)
        result = subprocess.run(
            ["fail2ban-regex", "--out", "ip", log, FILTER],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        matched = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        self.assertEqual(sorted(matched), sorted(expected), result.stdout + result.stderr)
        # Nothing else matched: not the successes, not the other events.
        self.assertEqual(len(matched), len(expected))
        # And fail2ban read each line's own time from "ts".
        verbose = subprocess.run(
            ["fail2ban-regex", "-v", log, FILTER], capture_output=True, text=True,
            timeout=120)
        self.assertIn("Lines: %d lines, 0 ignored, %d matched, %d missed" % (
            len(lines), len(expected), len(lines) - len(expected)), verbose.stdout)
        self.assertIn('[%d] "ts":"Year-Month-DayT24hour' % len(lines), verbose.stdout)


def oauthbearer(token):
    """imaplib's authobject for OAUTHBEARER (RFC 7628 §3.1); a single %x01 answers an
    error challenge (§3.2.3)."""
    def respond(challenge):
        return b"\x01" if challenge else ("n,,\x01auth=Bearer %s\x01\x01" % token).encode()
    return respond


class OAuthTest(unittest.TestCase):
    def imap(self):
        context = ssl.create_default_context(cafile=SYSTEM.cert)
        client = imaplib.IMAP4_SSL("127.0.0.1", DIRECT.imaps_port, ssl_context=context,
                                   timeout=15)
        self.addCleanup(client.shutdown)
        return client

    def test_key_set_reload_and_refused_token(self):
        global ISSUER
        # The identity provider rotates its key: the service reads the new set when
        # the next token is checked.
        old = ISSUER
        ISSUER = harness.OAuthIssuer(SYSTEM.dir, kid="test-key-2")
        token = ISSUER.token(USER)
        client = self.imap()
        self.assertEqual(client.authenticate("OAUTHBEARER", oauthbearer(token))[0], "OK")
        reload = wait_for(SERVICE_ERR, named("oauth_keys_reload"))
        self.assertEqual(reload["result"], "ok")
        self.assertEqual(reload["keys"], 1)
        self.assertEqual(reload["file"], ISSUER.jwks_path)
        ok = wait_for(DIRECT_ERR, named("login_succeeded", mechanism="OAUTHBEARER"))
        self.assertEqual(ok["user"], USER)
        # A token signed with the old key is refused, on both sides, and neither
        # token appears in any log.
        stale = old.token(FAILING_USER)
        with self.assertRaises(imaplib.IMAP4.error):
            self.imap().authenticate("OAUTHBEARER", oauthbearer(stale))
        refused = wait_for(SERVICE_ERR, named("bearer_token_refused"))
        self.assertEqual(refused["reason"], "invalid_token")
        self.assertEqual(refused["client"], "127.0.0.1")
        failed = wait_for(DIRECT_ERR, named("login_failed", mechanism="OAUTHBEARER"))
        self.assertEqual(failed["reason"], "bad_credentials")
        for path in (DIRECT_ERR, SERVICE_ERR):
            with open(path) as f:
                data = f.read()
            self.assertNotIn(token, data)
            self.assertNotIn(stale, data)
            self.assertNotIn(token.split(".")[2], data)  # not even the signature


class ServiceEventsTest(unittest.TestCase):
    def test_started(self):
        started = wait_for(SERVICE_ERR, named("started"))
        self.assertEqual(started["backend"], "sqlite")
        self.assertEqual(started["port"], SYSTEM.service_port)
        self.assertEqual(started["listen"], "127.0.0.1:0")
        self.assertIs(started["tls"], False)
        self.assertEqual(started["replica"], socket.gethostname())
        with open(os.path.join(SYSTEM.dir, "service.log")) as f:
            stdout = f.read()
        self.assertIn("mailbox-service listening on", stdout)
        self.assertNotIn('"event"', stdout)


class ZzShutdownTest(unittest.TestCase):
    """Last (unittest runs classes by name): stops the service, then the gateway."""

    def test_store_unavailable_drain_and_stop(self):
        held = RawClient(DIRECT.imaps_port, "tls", cafile=SYSTEM.cert)
        port = held.sock.getsockname()[1]
        held.login(USER, PASSWORD)
        SYSTEM.stop_service()
        draining = wait_for(SERVICE_ERR, named("draining"))
        self.assertEqual(draining["signal"], "Terminated")
        wait_for(SERVICE_ERR, named("stopped"))
        # Every line the service wrote is JSON (events() checks each).
        self.assertTrue(events(SERVICE_ERR))
        _, tagged = held.command("SELECT INBOX", timeout=30)
        self.assertIn(b"UNAVAILABLE", tagged)
        client = "127.0.0.1:%d" % port
        unavailable = wait_for(DIRECT_ERR, named("store_unavailable", client=client))
        self.assertEqual(unavailable["level"], "error")
        self.assertEqual(unavailable["user"], USER)
        # SIGTERM with a session open: it is closed at --drain-timeout (1 s).
        DIRECT.process.send_signal(signal.SIGTERM)
        DIRECT.process.wait(timeout=30)
        draining = wait_for(DIRECT_ERR, named("draining"))
        self.assertEqual(draining["drain_timeout_ms"], 1000)
        closed = wait_for(DIRECT_ERR, named("connection_closed", client=client))
        self.assertEqual(closed["end"], "drain")
        wait_for(DIRECT_ERR, named("stopped"))
        held.close()
        self.assertTrue(events(DIRECT_ERR))
        self.assertTrue(events(PROXIED_ERR))


if __name__ == "__main__":
    unittest.main()
