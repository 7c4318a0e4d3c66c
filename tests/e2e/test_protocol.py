"""Exact IMAP exchanges with the raw-socket driver against the real gateway and
mailbox service: greeting, literals, APPEND/MULTIAPPEND, pipelining, IDLE woken by
other sessions, by the admin tool and through a second gateway, the timers, and the
bad-input suite (each case: BAD or BYE with a clear message, and the gateway lives on).
"""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from raw_client import ConnectionClosed, RawClient  # noqa: E402

SYSTEM = None
GATEWAY = None   # defaults
GATEWAY2 = None  # a second gateway on the same mailbox service

MESSAGE = (b"From: Alice <alice@example.org>\r\n"
           b"To: Bob <bob@example.org>\r\n"
           b"Subject: raw test\r\n"
           b"Date: Mon, 5 Jan 2026 10:00:00 +0000\r\n"
           b"\r\n"
           b"Body of the raw test.\r\n")


def setUpModule():
    global SYSTEM, GATEWAY, GATEWAY2
    SYSTEM = harness.System("protocol")
    # Runs even if the rest of setUpModule fails (tearDownModule would not).
    unittest.addModuleCleanup(SYSTEM.stop)
    SYSTEM.start_service()
    GATEWAY = SYSTEM.start_gateway("--gateway-id=e2e-1")
    GATEWAY2 = SYSTEM.start_gateway("--gateway-id=e2e-2")


def tls(gateway=None, **kwargs):
    gateway = gateway or GATEWAY
    return RawClient(gateway.imaps_port, "tls", cafile=SYSTEM.cert, **kwargs)


def plain(gateway=None, **kwargs):
    gateway = gateway or GATEWAY
    return RawClient(gateway.imap_port, "plain", cafile=SYSTEM.cert, **kwargs)


def append_raw(client, mailbox, message, flags=""):
    """APPEND with a LITERAL+ literal; returns the tagged line."""
    tag = client.tag()
    client.send(b"%s APPEND %s %s{%d+}\r\n%s\r\n"
                % (tag.encode(), mailbox.encode(), flags.encode(), len(message), message))
    _, tagged = client.read_tagged(tag)
    assert tagged.startswith(tag.encode() + b" OK"), tagged
    return tagged


class Base(unittest.TestCase):
    def setUp(self):
        self.user, self.password = SYSTEM.new_user("raw")
        self.clients = []

    def tearDown(self):
        for client in self.clients:
            client.close()
        for gateway in (GATEWAY, GATEWAY2):
            self.assertTrue(gateway.alive(), "gateway died with status %s:\n%s"
                            % (gateway.process.returncode, gateway.log()[-3000:]))

    def connect(self, gateway=None, login=True, select=None):
        client = tls(gateway)
        self.clients.append(client)
        if login:
            client.login(self.user, self.password)
        if select:
            client.ok("SELECT " + select)
        return client

    def assertTagged(self, line, tag, status):
        self.assertTrue(line.startswith(("%s %s " % (tag, status)).encode()),
                        "expected %s %s, got %r" % (tag, status, line))
        text = line[len(tag) + len(status) + 2:]
        text = re.sub(rb"^\[[^\]]*\]\s*", b"", text)
        self.assertTrue(text.strip(), "no human-readable text in %r" % line)


class GreetingTest(Base):
    def test_imaps_greeting(self):
        client = self.connect(login=False)
        self.assertRegex(client.greeting, rb"^\* OK \[CAPABILITY IMAP4rev1 [^\]]*\] \S")
        caps = re.search(rb"\[CAPABILITY ([^\]]*)\]", client.greeting).group(1).split()
        self.assertIn(b"AUTH=PLAIN", caps)
        self.assertIn(b"SASL-IR", caps)
        self.assertNotIn(b"STARTTLS", caps)
        self.assertNotIn(b"LOGINDISABLED", caps)
        untagged = client.ok("CAPABILITY")
        self.assertEqual(len(untagged), 1)
        self.assertTrue(untagged[0].startswith(b"* CAPABILITY IMAP4rev1 "))

    def test_plain_greeting_and_login_refused(self):
        client = plain()
        self.clients.append(client)
        self.assertRegex(client.greeting, rb"^\* OK \[CAPABILITY IMAP4rev1 ")
        caps = re.search(rb"\[CAPABILITY ([^\]]*)\]", client.greeting).group(1).split()
        self.assertIn(b"STARTTLS", caps)
        self.assertIn(b"LOGINDISABLED", caps)
        self.assertNotIn(b"AUTH=PLAIN", caps)
        _, tagged = client.command('LOGIN "%s" "%s"' % (self.user, self.password), tag="l1")
        self.assertTagged(tagged, "l1", "NO")
        self.assertIn(b"[PRIVACYREQUIRED]", tagged)
        client.starttls()
        untagged = client.ok("CAPABILITY")
        self.assertIn(b"AUTH=PLAIN", untagged[0])
        self.assertNotIn(b"STARTTLS", untagged[0])
        untagged, tagged = client.command('LOGIN "%s" "%s"' % (self.user, self.password), tag="l2")
        self.assertTagged(tagged, "l2", "OK")
        self.assertIn(b"[CAPABILITY IMAP4rev1", tagged)

    def test_auth_failures_then_bye(self):
        client = self.connect(login=False)
        for attempt in range(1, 4):
            _, tagged = client.command('LOGIN "%s" "wrong"' % self.user, tag="f%d" % attempt)
            self.assertTagged(tagged, "f%d" % attempt, "NO")
            self.assertIn(b"[AUTHENTICATIONFAILED]", tagged)
        client.send(b'f4 LOGIN "%s" "wrong"\r\n' % self.user.encode())
        tagged = client.read_line()
        self.assertTagged(tagged, "f4", "NO")
        bye = client.read_line()
        self.assertRegex(bye, rb"^\* BYE \S")
        with self.assertRaises(ConnectionClosed):
            client.read_line(timeout=5)


class LiteralTest(Base):
    def test_synchronizing_literals_in_login(self):
        client = self.connect(login=False)
        user, password = self.user.encode(), self.password.encode()
        client.send(b"a1 LOGIN {%d}\r\n" % len(user))
        cont = client.expect_continuation()
        self.assertEqual(len(cont), 1, cont)
        client.send(user + b" {%d}\r\n" % len(password))
        client.expect_continuation()
        client.send(password + b"\r\n")
        _, tagged = client.read_tagged("a1")
        self.assertTagged(tagged, "a1", "OK")

    def test_non_synchronizing_literals(self):
        client = self.connect(login=False)
        user, password = self.user.encode(), self.password.encode()
        client.send(b"a1 LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n"
                    % (len(user), user, len(password), password))
        lines, tagged = client.read_tagged("a1")
        self.assertFalse(any(line.startswith(b"+") for line in lines), lines)
        self.assertTagged(tagged, "a1", "OK")
        client.send(b"a2 STATUS {5+}\r\nINBOX (MESSAGES)\r\n")
        lines, tagged = client.read_tagged("a2")
        self.assertTagged(tagged, "a2", "OK")
        self.assertEqual(lines, [b'* STATUS INBOX (MESSAGES 0)'])

    def test_utf8_literal_in_search(self):
        client = self.connect(select=None)
        append_raw(client, "INBOX", MESSAGE.replace(b"raw test", b"=?UTF-8?Q?Caf=C3=A9?= menu"))
        append_raw(client, "INBOX", MESSAGE)
        client.ok("SELECT INBOX")
        word = "Café".encode()
        client.send(b"s1 SEARCH CHARSET UTF-8 SUBJECT {%d}\r\n" % len(word))
        client.expect_continuation()
        client.send(word + b"\r\n")
        lines, tagged = client.read_tagged("s1")
        self.assertTagged(tagged, "s1", "OK")
        self.assertIn(b"* SEARCH 1", lines)

    def test_append_synchronizing_literal(self):
        client = self.connect()
        client.send(b'p1 APPEND INBOX (\\Seen) "05-Jan-2026 10:00:00 +0000" {%d}\r\n'
                    % len(MESSAGE))
        client.expect_continuation()
        client.send(MESSAGE + b"\r\n")
        _, tagged = client.read_tagged("p1")
        self.assertTagged(tagged, "p1", "OK")
        self.assertRegex(tagged, rb"^p1 OK \[APPENDUID \d+ 1\] ")
        untagged = client.ok("SELECT INBOX")
        self.assertIn(b"* 1 EXISTS", untagged)
        lines = client.ok("FETCH 1 (FLAGS BODY.PEEK[])")
        self.assertEqual(len(lines), 1)
        self.assertIn(b"\\Seen", lines[0])
        self.assertIn(b"{%d}\r\n%s" % (len(MESSAGE), MESSAGE), lines[0])

    def test_append_to_selected_mailbox_reports_exists(self):
        # RFC 3501 §6.3.11: the server SHOULD send EXISTS when APPEND adds to the
        # selected mailbox; clients such as imaplib users FETCH the new message next.
        client = self.connect(select="INBOX")
        client.send(b"e1 APPEND INBOX {%d+}\r\n%s\r\n" % (len(MESSAGE), MESSAGE))
        untagged, tagged = client.read_tagged("e1")
        self.assertTagged(tagged, "e1", "OK")
        self.assertIn(b"* 1 EXISTS", untagged)
        lines = client.ok("FETCH 1 (UID)")
        self.assertEqual(lines, [b"* 1 FETCH (UID 1)"])

    def test_multiappend(self):
        client = self.connect()
        first, second, third = MESSAGE, MESSAGE.replace(b"raw test", b"second"), b"Subject: 3\r\n\r\nx\r\n"
        client.send(b"m1 APPEND INBOX {%d+}\r\n%s (\\Flagged) {%d+}\r\n%s {%d+}\r\n%s\r\n"
                    % (len(first), first, len(second), second, len(third), third))
        _, tagged = client.read_tagged("m1")
        self.assertRegex(tagged, rb"^m1 OK \[APPENDUID \d+ 1:3\] ")
        # Synchronizing literals: one "+" per message.
        client.send(b"m2 APPEND INBOX {%d}\r\n" % len(first))
        client.expect_continuation()
        client.send(first + b" {%d}\r\n" % len(second))
        client.expect_continuation()
        client.send(second + b"\r\n")
        _, tagged = client.read_tagged("m2")
        self.assertRegex(tagged, rb"^m2 OK \[APPENDUID \d+ 4:5\] ")
        lines = client.ok("STATUS INBOX (MESSAGES)")
        self.assertIn(b"* STATUS INBOX (MESSAGES 5)", lines)

    def test_binary_literal_append(self):
        client = self.connect()
        data = (b"Subject: binary\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Transfer-Encoding: binary\r\n\r\n\x00\x01\x02\xff\r\n")
        client.send(b"b1 APPEND INBOX ~{%d}\r\n" % len(data))
        client.expect_continuation()
        client.send(data + b"\r\n")
        _, tagged = client.read_tagged("b1")
        self.assertTagged(tagged, "b1", "OK")
        client.ok("SELECT INBOX")
        lines = client.ok("FETCH 1 (BINARY.PEEK[1])")
        self.assertIn(b"~{6}\r\n\x00\x01\x02\xff\r\n", lines[0])

    def test_zero_length_literal(self):
        client = self.connect()
        client.send(b"z1 LIST {0+}\r\n {1+}\r\n*\r\n")
        lines, tagged = client.read_tagged("z1")
        self.assertTagged(tagged, "z1", "OK")
        self.assertTrue(any(b"INBOX" in line for line in lines), lines)


class PipeliningTest(Base):
    def test_commands_in_one_write(self):
        client = self.connect()
        append_raw(client, "INBOX", MESSAGE)
        client.send(b"p1 NOOP\r\np2 SELECT INBOX\r\np3 FETCH 1 (FLAGS)\r\n"
                    b"p4 STORE 1 +FLAGS (\\Flagged)\r\np5 SEARCH FLAGGED\r\np6 CAPABILITY\r\n")
        order = []
        lines = client.read_lines_until(lambda line: line.startswith(b"p6 "))
        for line in lines:
            if re.match(rb"^p\d ", line):
                order.append(line[:2])
                self.assertIn(b" OK ", line)
        self.assertEqual(order, [b"p1", b"p2", b"p3", b"p4", b"p5", b"p6"])
        self.assertIn(b"* SEARCH 1", lines)
        # Untagged data of each command precedes its own tagged response.
        p3 = lines.index(next(l for l in lines if l.startswith(b"p3 ")))
        self.assertTrue(lines[p3 - 1].startswith(b"* 1 FETCH"), lines)

    def test_pipelined_appends_and_logout(self):
        client = self.connect()
        batch = b"".join(b"a%d APPEND INBOX {%d+}\r\n%s\r\n" % (i, len(MESSAGE), MESSAGE)
                         for i in range(10))
        client.send(batch + b"z LOGOUT\r\n")
        lines = client.read_lines_until(lambda line: line.startswith(b"z "))
        tags = [line.split()[0] for line in lines if not line.startswith(b"*")]
        self.assertEqual(tags, [b"a%d" % i for i in range(10)] + [b"z"])
        self.assertIn(b"* BYE", b"\n".join(lines))


class IdleTest(Base):
    def start_idle(self, client, tag="i1"):
        client.send(tag.encode() + b" IDLE\r\n")
        lines = client.expect_continuation()
        self.assertTrue(lines[-1].startswith(b"+ "), lines)

    def wait_for(self, client, pattern, timeout=10):
        lines = client.read_lines_until(lambda line: re.search(pattern, line) is not None,
                                        timeout=timeout)
        return lines

    def stop_idle(self, client, tag="i1"):
        client.send(b"DONE\r\n")
        lines, tagged = client.read_tagged(tag)
        self.assertTagged(tagged, tag, "OK")
        return lines

    def test_append_from_other_connection(self):
        watcher = self.connect(select="INBOX")
        other = self.connect()
        self.start_idle(watcher)
        append_raw(other, "INBOX", MESSAGE)
        self.wait_for(watcher, rb"^\* 1 EXISTS$")
        append_raw(other, "INBOX", MESSAGE)
        self.wait_for(watcher, rb"^\* 2 EXISTS$")
        self.stop_idle(watcher)
        watcher.ok("NOOP")

    def test_store_and_expunge_from_other_session(self):
        writer = self.connect()
        append_raw(writer, "INBOX", MESSAGE)
        append_raw(writer, "INBOX", MESSAGE)
        watcher = self.connect(select="INBOX")
        writer.ok("SELECT INBOX")
        self.start_idle(watcher)
        writer.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
        self.wait_for(watcher, rb"^\* 1 FETCH \(.*FLAGS \([^)]*\\Flagged")
        writer.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        self.wait_for(watcher, rb"^\* 2 FETCH \(.*FLAGS \([^)]*\\Deleted")
        writer.ok("EXPUNGE")
        self.wait_for(watcher, rb"^\* 2 EXPUNGE$")
        self.stop_idle(watcher)
        lines = watcher.ok("FETCH 1:* (UID)")
        self.assertEqual(len(lines), 1, lines)

    def test_revision_by_admin_tool(self):
        writer = self.connect()
        append_raw(writer, "INBOX", MESSAGE)
        append_raw(writer, "INBOX", MESSAGE)
        watcher = self.connect(select="INBOX")
        self.start_idle(watcher)
        path = os.path.join(SYSTEM.dir, "revision-%s.eml" % self.user)
        with open(path, "wb") as f:
            f.write(MESSAGE.replace(b"raw test", b"revised"))
        output = SYSTEM.admin("revise", self.user, "INBOX", "1", path)
        self.assertRegex(output, r"revised UID 1 -> 3")
        seen = []
        deadline = time.monotonic() + 10
        while not (any(re.match(rb"^\* 1 EXPUNGE$", l) for l in seen)
                   and any(re.match(rb"^\* \d EXISTS$", l) for l in seen)):
            seen.append(watcher.read_line(timeout=max(0.01, deadline - time.monotonic())))
        self.stop_idle(watcher)
        lines = watcher.ok("FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertEqual(len(lines), 2, lines)
        self.assertIn(b"UID 2", lines[0])
        self.assertIn(b"UID 3", lines[1])
        self.assertIn(b"revised", lines[1])

    def test_two_gateways(self):
        watcher = self.connect(GATEWAY, select="INBOX")
        other = self.connect(GATEWAY2)
        self.start_idle(watcher)
        append_raw(other, "INBOX", MESSAGE)
        self.wait_for(watcher, rb"^\* 1 EXISTS$")
        other.ok("SELECT INBOX")
        other.ok("STORE 1 +FLAGS (\\Seen)")
        self.wait_for(watcher, rb"^\* 1 FETCH \(.*\\Seen")
        self.stop_idle(watcher)
        # And the other way round.
        self.start_idle(other, "i2")
        append_raw(watcher, "INBOX", MESSAGE)
        self.wait_for(other, rb"^\* 2 EXISTS$")
        self.stop_idle(other, "i2")

    def test_changes_reported_after_idle_on_noop(self):
        watcher = self.connect(select="INBOX")
        other = self.connect()
        append_raw(other, "INBOX", MESSAGE)
        deadline = time.monotonic() + 10
        while True:
            lines = watcher.ok("NOOP")
            if b"* 1 EXISTS" in lines:
                break
            self.assertLess(time.monotonic(), deadline, "NOOP never reported EXISTS")
            time.sleep(0.1)


class TimerTest(unittest.TestCase):
    """A gateway with short timers: 2 s before login, 3 s autologout, 1 s keepalive."""

    @classmethod
    def setUpClass(cls):
        cls.gateway = SYSTEM.start_gateway("--unauthenticated-timeout=2s", "--autologout=3s",
                                           "--idle-keepalive=1s")

    def setUp(self):
        self.user, self.password = SYSTEM.new_user("timer")

    def tearDown(self):
        self.assertTrue(self.gateway.alive(), "gateway died with status %s:\n%s"
                        % (self.gateway.process.returncode, self.gateway.log()[-3000:]))

    def client(self):
        return RawClient(self.gateway.imaps_port, "tls", cafile=SYSTEM.cert)

    def test_unauthenticated_timeout_not_reset_by_commands(self):
        with self.client() as client:
            start = time.monotonic()
            time.sleep(1.0)
            client.ok("NOOP")
            client.ok("CAPABILITY")
            bye = client.read_line(timeout=5)
            elapsed = time.monotonic() - start
            self.assertRegex(bye, rb"^\* BYE \S")
            self.assertGreater(elapsed, 1.5)
            self.assertLess(elapsed, 3.5)
            with self.assertRaises(ConnectionClosed):
                client.read_line(timeout=5)

    def test_autologout_reset_by_commands(self):
        with self.client() as client:
            client.login(self.user, self.password)
            time.sleep(2.0)
            client.ok("NOOP")
            noop = time.monotonic()
            client.expect_silence(2.0)  # 4 s after login, 2 s after NOOP: still there
            bye = client.read_line(timeout=5)
            elapsed = time.monotonic() - noop
            self.assertRegex(bye, rb"^\* BYE .*\S")
            self.assertGreater(elapsed, 2.8)
            self.assertLess(elapsed, 4.5)

    def test_idle_keepalive_then_autologout(self):
        with self.client() as client:
            client.login(self.user, self.password)
            client.ok("SELECT INBOX")
            client.send(b"i IDLE\r\n")
            client.expect_continuation()
            start = time.monotonic()
            lines = client.read_lines_until(lambda line: line.startswith(b"* BYE"), timeout=8)
            elapsed = time.monotonic() - start
            still_here = [line for line in lines if line == b"* OK Still here"]
            self.assertGreaterEqual(len(still_here), 2, lines)
            self.assertGreater(elapsed, 2.5)
            self.assertLess(elapsed, 5)

    def test_login_in_time_stops_unauthenticated_timer(self):
        with self.client() as client:
            client.login(self.user, self.password)
            time.sleep(1.5)
            client.ok("NOOP")
            time.sleep(1.5)  # 3 s after connecting: the 2 s login timer no longer applies
            client.ok("NOOP")


class BadInputTest(Base):
    """Each case: a BAD (or BYE) with a clear message, then the same connection (or a
    new one, after BYE) still works, and the gateway process is still alive."""

    def setUp(self):
        super().setUp()
        self.client = self.connect()
        append_raw(self.client, "INBOX", MESSAGE)
        append_raw(self.client, "INBOX", MESSAGE)
        append_raw(self.client, "INBOX", MESSAGE)
        self.client.ok("SELECT INBOX")

    def expect_refusal(self, client, tag, timeout=10):
        """Reads until the tagged response of `tag` or a BYE; asserts BAD/BYE with text.
        Returns "BAD" or "BYE"."""
        prefix = tag.encode() + b" "
        lines = client.read_lines_until(
            lambda line: line.startswith(prefix) or line.startswith(b"* BYE"), timeout)
        last = lines[-1]
        self.assertFalse(any(line.startswith(b"+") for line in lines),
                         "unexpected continuation: %r" % lines)
        if last.startswith(b"* BYE"):
            self.assertTrue(last[6:].strip(), last)
            return "BYE"
        # A refused command may also be answered "* BAD" before the tagged BAD.
        self.assertTagged(last, tag, "BAD")
        # A BYE may follow the tagged BAD when the gateway cannot resynchronise.
        try:
            after = client.read_line(timeout=0.3)
        except TimeoutError:
            return "BAD"
        except ConnectionClosed:
            return "BYE"
        self.assertTrue(after.startswith(b"* BYE ") and after[6:].strip(),
                        "unexpected line after BAD: %r" % after)
        return "BYE"

    def still_works(self, client, outcome):
        self.assertTrue(GATEWAY.alive(), "gateway died:\n" + GATEWAY.log()[-3000:])
        if outcome == "BAD":
            self.assertTrue(client.alive(), "connection unusable after BAD:\n"
                            + client.format_transcript())
        else:
            with self.assertRaises((ConnectionClosed, OSError)):
                client.read_line(timeout=5)
        fresh = self.connect(select="INBOX")
        fresh.ok("NOOP")

    def case(self, data, tag="x", allow_bye=True, client=None):
        client = client or self.client
        client.send_tolerant(data)
        outcome = self.expect_refusal(client, tag)
        if not allow_bye:
            self.assertEqual(outcome, "BAD")
        self.still_works(client, outcome)
        return outcome

    def test_nul_in_quoted_string(self):
        self.case(b'x SELECT "IN\x00BOX"\r\n', allow_bye=False)
        self.case(b'x SEARCH SUBJECT "a\x00b"\r\n', allow_bye=False)

    def test_nul_in_literal(self):
        self.client.send(b"x SELECT {5}\r\n")
        self.client.expect_continuation()
        self.case(b"IN\x00OX\r\n")

    def test_nul_in_non_synchronizing_literal(self):
        self.case(b"x SEARCH SUBJECT {3+}\r\na\x00b\r\n")

    def test_literal_length_beyond_32_bits(self):
        self.case(b"x SELECT {4294967296}\r\n", allow_bye=False)
        client = self.connect(login=False)
        self.case(b"x LOGIN {4294967296}\r\n", client=client, allow_bye=False)
        self.case(b"x SELECT {99999999999999999999999}\r\n", allow_bye=False)

    def test_literal_over_limit(self):
        # Synchronizing: refused before the client sends the data.
        self.case(b"x SELECT {65537}\r\n", allow_bye=False)
        # Non-synchronizing: the data is already on its way.
        self.case(b"x SEARCH SUBJECT {65537+}\r\n" + b"a" * 65537 + b"\r\n")

    def test_append_over_limit(self):
        self.client.send(b"x APPEND INBOX {67108865}\r\n")
        lines = self.client.read_lines_until(lambda line: line.startswith(b"x "))
        # RFC 7889 §4: over APPENDLIMIT is NO [TOOBIG], before any data is sent.
        self.assertRegex(lines[-1], rb"^x NO \[TOOBIG\] \S")
        self.assertTrue(self.client.alive())

    def test_thousands_of_literals(self):
        command = b"x SEARCH" + b" SUBJECT {1+}\r\na" * 3000 + b"\r\n"
        self.case(command)

    def test_thousands_of_synchronizing_literals(self):
        self.client.send(b"x SEARCH")
        for i in range(1001):
            self.client.send(b" SUBJECT {1}\r\n")
            line = self.client.read_line()
            if not line.startswith(b"+"):
                self.assertLessEqual(i, 1000)
                self.assertTagged(line, "x", "BAD")
                self.still_works(self.client, "BAD")
                return
            self.client.send(b"a")
        self.fail("1001 literals in one command were all accepted")

    def test_line_over_limit(self):
        self.case(b'x SEARCH SUBJECT "' + b"a" * 70000 + b'"\r\n')

    def test_endless_line_without_crlf(self):
        # The gateway must refuse before the line ends, not buffer it all.
        self.client.send(b"x SEARCH SUBJECT " + b"a" * 200000)
        lines = self.client.read_lines_until(
            lambda line: line.startswith(b"x ") or line.startswith(b"* BAD")
            or line.startswith(b"* BYE"))
        self.assertRegex(lines[-1], rb"^(x BAD|\* BAD|\* BYE) .*\S")
        self.assertTrue(GATEWAY.alive())
        self.connect(select="INBOX").ok("NOOP")

    def test_unterminated_quote(self):
        self.case(b'x SELECT "INBOX\r\n', allow_bye=False)
        self.case(b'x LOGIN "a b\r\n', allow_bye=False)

    def test_deep_nesting_in_fetch(self):
        self.case(b"x FETCH 1 " + b"(" * 1000 + b"FLAGS" + b")" * 1000 + b"\r\n")

    def test_deep_nesting_in_search(self):
        self.case(b"x SEARCH " + b"(" * 1000 + b"ALL" + b")" * 1000 + b"\r\n")
        self.case(b"x SEARCH " + b"NOT " * 1000 + b"ALL\r\n")
        self.case(b"x SEARCH " + b"OR ALL " * 1000 + b"ALL\r\n")

    def test_invalid_modified_utf7(self):
        # RFC 3501 §5.1.3: names are modified UTF-7, so no mailbox has one that is
        # not. The commands are well formed: NO, not BAD; a LIST pattern matches
        # nothing.
        for name in (b'"&Jjo"', b'"a&AGE-b"', b'"&ZeVnLIqe"', b'"&-&"', b'"caf\xc3\xa9"',
                     b'"&AGEAYgBj-"', b'"&2D0-"'):
            with self.subTest(name=name):
                for verb, code in ((b"CREATE", b"CANNOT"), (b"SELECT", b"NONEXISTENT"),
                                   (b"EXAMINE", b"NONEXISTENT"), (b"DELETE", b"NONEXISTENT")):
                    self.client.send(b"n1 " + verb + b" " + name + b"\r\n")
                    _, tagged = self.client.read_tagged("n1")
                    self.assertTrue(tagged.startswith(b"n1 NO [" + code + b"] "), tagged)
                    self.assertIn(b"not valid modified UTF-7", tagged)
                self.client.send(b"n2 STATUS " + name + b" (MESSAGES)\r\n")
                untagged, tagged = self.client.read_tagged("n2")
                self.assertTrue(tagged.startswith(b"n2 NO [NONEXISTENT] "), tagged)
                self.assertEqual(untagged, [])
                self.client.send(b'n3 LIST "" ' + name + b"\r\n")
                untagged, tagged = self.client.read_tagged("n3")
                self.assertTrue(tagged.startswith(b"n3 OK "), tagged)
                self.assertEqual(untagged, [])
        # Only the invalid pattern matches nothing; the others of the command still do.
        lines = self.client.ok('LIST "" ("&Jjo" INBOX)')
        self.assertEqual(lines, [b'* LIST (\\HasNoChildren) "/" INBOX'])
        self.client.ok("SELECT INBOX")  # the session goes on

    def test_sequence_set_edge_cases(self):
        # 4294967295 is a valid number but no such message exists.
        self.case(b"x FETCH 1:*,*:1,4294967295 (FLAGS)\r\n", allow_bye=False)
        self.case(b"x FETCH 4294967296 (FLAGS)\r\n", allow_bye=False)
        self.case(b"x FETCH 0 (FLAGS)\r\n", allow_bye=False)
        self.case(b"x FETCH 1:: (FLAGS)\r\n", allow_bye=False)
        # As UIDs, a set of absent UIDs is fine (RFC 3501 §6.4.8).
        lines = self.client.ok("UID FETCH 1:*,*:1,4294967295 (FLAGS)")
        self.assertEqual(len([l for l in lines if b" FETCH " in l]), 3, lines)
        lines = self.client.ok("SEARCH 1:*,*:1")
        self.assertIn(b"* SEARCH 1 2 3", lines)

    def test_commands_in_wrong_state(self):
        fresh = self.connect(login=False)
        for command in (b"SELECT INBOX", b"FETCH 1 (FLAGS)", b"IDLE", b"LIST \"\" *",
                        b"EXPUNGE", b"APPEND INBOX {3+}\r\nabc"):
            with self.subTest(state="not authenticated", command=command):
                self.case(b"x " + command + b"\r\n", client=fresh, allow_bye=False)
        authed = self.connect()
        for command in (b"FETCH 1 (FLAGS)", b"STORE 1 +FLAGS (\\Seen)", b"EXPUNGE", b"CLOSE",
                        b"UNSELECT", b"SEARCH ALL", b"COPY 1 INBOX",
                        b"LOGIN a b", b"AUTHENTICATE PLAIN", b"STARTTLS"):
            with self.subTest(state="authenticated", command=command):
                self.case(b"x " + command + b"\r\n", client=authed, allow_bye=False)
        for command in (b"LOGIN a b", b"STARTTLS", b"AUTHENTICATE PLAIN AGFAYg=="):
            with self.subTest(state="selected", command=command):
                self.case(b"x " + command + b"\r\n", allow_bye=False)

    def test_malformed_commands(self):
        for data in (b"x FROBNICATE\r\n", b"x NOOP extra\r\n", b"x FETCH\r\n",
                     b"x FETCH 1 (FLAGS\r\n", b"x STORE 1 +FLAGS (\\Bogus\r\n",
                     b"x SEARCH BEFORE 31-Feb-20266\r\n", b"x SELECT\r\n"):
            with self.subTest(data=data):
                self.case(data, allow_bye=False)
        # No tag at all, or a tag that is too long.
        self.client.send(b"\r\n")
        line = self.client.read_line()
        self.assertRegex(line, rb"^\* BAD \S")
        self.assertTrue(self.client.alive())
        self.client.send(b"x" * 200 + b" NOOP\r\n")
        line = self.client.read_line()
        self.assertRegex(line, rb"^(\* BAD|x+ BAD|\* BYE) \S")


class StartTlsTest(Base):
    def test_bytes_pipelined_behind_starttls_are_dropped(self):
        client = plain()
        self.clients.append(client)
        client.send(b"a STARTTLS\r\nb NOOP\r\n")
        tagged = client.read_line()
        self.assertRegex(tagged, rb"^a OK \S")
        client.upgrade()
        untagged, tagged = client.command("NOOP", tag="c")
        self.assertTagged(tagged, "c", "OK")
        self.assertFalse(any(line.startswith(b"b ") for line in untagged), untagged)
        client.login(self.user, self.password)
        client.expect_silence(0.5)
        self.assertNotIn(b"b OK", b"".join(d for k, d in client.transcript if k == "S"))

    def test_starttls_twice_and_after_login(self):
        client = plain()
        self.clients.append(client)
        client.starttls()
        _, tagged = client.command("STARTTLS", tag="s2")
        self.assertTagged(tagged, "s2", "BAD")
        client.login(self.user, self.password)
        client.ok("SELECT INBOX")

    def test_garbage_instead_of_handshake(self):
        client = plain()
        self.clients.append(client)
        client.send(b"a STARTTLS\r\n")
        client.read_line()
        client.send(b"this is not a TLS ClientHello\r\n" * 10)
        with self.assertRaises((ConnectionClosed, TimeoutError, OSError)):
            client.read_line(timeout=10)
        self.assertTrue(GATEWAY.alive())
        self.connect().ok("NOOP")


if __name__ == "__main__":
    unittest.main()
