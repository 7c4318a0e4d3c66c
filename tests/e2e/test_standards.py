"""Pins the behaviour stated in docs/standards-support.md: one class per group of
sections of the seed statement (Microsoft's [MS-STANXIMAP]), each test an exact
exchange over a raw socket against the real mailbox service and gateway.

Where another suite (test_protocol.py, test_imaplib.py, unit tests) already pins a
statement, the statement cites that test and nothing is repeated here.
"""

import base64
import datetime
import imaplib
import json
import os
import re
import ssl
import sys
import threading
import time
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from raw_client import ConnectionClosed, RawClient  # noqa: E402

SYSTEM = None
GATEWAY = None            # defaults
PLAINTEXT_GATEWAY = None  # --allow-plaintext-auth

MESSAGE = (b"From: Alice <alice@example.org>\r\n"
           b"To: Bob <bob@example.org>\r\n"
           b"Subject: standards\r\n"
           b"Date: Mon, 5 Jan 2026 10:00:00 +0000\r\n"
           b"Message-ID: <std-1@example.org>\r\n"
           b"\r\n"
           b"Body of the standards test.\r\n")


def setUpModule():
    global SYSTEM, GATEWAY, PLAINTEXT_GATEWAY
    SYSTEM = harness.System("standards")
    try:
        SYSTEM.start_service()
        GATEWAY = SYSTEM.start_gateway("--gateway-id=std-1")
        PLAINTEXT_GATEWAY = SYSTEM.start_gateway("--gateway-id=std-2",
                                                 "--allow-plaintext-auth=true")
    except Exception:
        SYSTEM.stop()  # tearDownModule does not run when setUpModule fails
        raise


def tearDownModule():
    if SYSTEM:
        SYSTEM.stop()


def append_raw(client, mailbox, message, flags=b""):
    """APPEND with a LITERAL+ literal; returns (untagged, tagged)."""
    tag = client.tag()
    client.send(b"%s APPEND %s %s{%d+}\r\n%s\r\n"
                % (tag.encode(), mailbox.encode(), flags, len(message), message))
    untagged, tagged = client.read_tagged(tag)
    assert tagged.startswith(tag.encode() + b" OK"), tagged
    return untagged, tagged


def caps_of(line):
    match = re.search(rb"\[CAPABILITY ([^\]]*)\]", line)
    return match.group(1).split() if match else None


def poll_until(client, command, predicate, timeout=10):
    """Repeats `command` until one of its untagged lines satisfies predicate."""
    deadline = time.monotonic() + timeout
    while True:
        lines = client.ok(command)
        if any(predicate(line) for line in lines):
            return lines
        if time.monotonic() > deadline:
            raise AssertionError("%s never reported the change; last %r" % (command, lines))
        time.sleep(0.1)


class Base(unittest.TestCase):
    def setUp(self):
        self.user, self.password = SYSTEM.new_user("std")
        self.clients = []

    def tearDown(self):
        for client in self.clients:
            client.close()
        for gateway in (GATEWAY, PLAINTEXT_GATEWAY):
            self.assertTrue(gateway.alive(), "gateway died:\n" + gateway.log()[-3000:])

    def connect(self, login=True, select=None, gateway=None, mode="tls"):
        gateway = gateway or GATEWAY
        port = gateway.imaps_port if mode == "tls" else gateway.imap_port
        client = RawClient(port, mode, cafile=SYSTEM.cert)
        self.clients.append(client)
        if login:
            client.login(self.user, self.password)
        if select:
            client.ok("SELECT " + select)
        return client

    def command(self, client, text, tag):
        return client.command(text, tag=tag)

    def assertTagged(self, line, tag, status, code=None):
        prefix = ("%s %s " % (tag, status)).encode()
        self.assertTrue(line.startswith(prefix), "expected %s %s, got %r" % (tag, status, line))
        rest = line[len(prefix):]
        if code is not None:
            self.assertTrue(rest.startswith(b"[" + code),
                            "expected [%r] in %r" % (code, line))
        text = re.sub(rb"^\[[^\]]*\]\s*", b"", rest)
        self.assertTrue(text.strip(), "no human-readable text in %r" % line)


# --- 2.1 Normative variations ------------------------------------------------------
class NormativeVariationsTest(Base):
    """Sections 2.1.4 to 2.1.7."""

    def test_plaintext_auth_can_be_allowed_by_configuration(self):
        # 2.1.4: LOGINDISABLED is the default without TLS; --allow-plaintext-auth lifts it.
        client = self.connect(login=False, gateway=PLAINTEXT_GATEWAY, mode="plain")
        caps = caps_of(client.greeting)
        self.assertIn(b"STARTTLS", caps)
        self.assertIn(b"AUTH=PLAIN", caps)
        self.assertNotIn(b"LOGINDISABLED", caps)
        _, tagged = client.command('LOGIN "%s" "%s"' % (self.user, self.password), tag="p1")
        self.assertTagged(tagged, "p1", "OK", b"CAPABILITY IMAP4rev1")

    def test_command_syntax_is_strict(self):
        # 2.1.5 / 2.1.6: SP is exactly one space; TAB, doubled or trailing spaces are BAD.
        client = self.connect()
        for data, pattern in (
                (b"s1  NOOP\r\n", rb"^s1 BAD \S"),
                (b"s2 NOOP \r\n", rb"^s2 BAD unexpected extra arguments"),
                (b"s3 NOOP\t\r\n", rb"^s3 BAD unexpected extra arguments"),
                (b"s4 SELECT  INBOX\r\n", rb"^s4 BAD \S"),
                (b"s5\tNOOP\r\n", rb"^\* BAD expected a space")):
            with self.subTest(data=data):
                client.send(data)
                line = client.read_line()
                self.assertRegex(line, pattern)
        # Command names and keywords are case-insensitive (RFC 3501 §9).
        _, tagged = client.command("noop", tag="s6")
        self.assertTagged(tagged, "s6", "OK")

    def test_tls_is_1_2_or_later_with_aead_suites_only(self):
        # 2.1.7 / 2.2.37: no RC4, no 3DES, no CBC; TLS 1.2 and 1.3 with AEAD suites.
        client = self.connect(login=False)
        self.assertIn(client.sock.version(), ("TLSv1.2", "TLSv1.3"))
        context = ssl.create_default_context(cafile=SYSTEM.cert)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        client12 = RawClient(GATEWAY.imaps_port, "plain", cafile=SYSTEM.cert, read_greeting=False)
        self.clients.append(client12)
        client12.sock = context.wrap_socket(client12.sock, server_hostname="127.0.0.1")
        self.assertEqual(client12.sock.version(), "TLSv1.2")
        self.assertRegex(client12.sock.cipher()[0], r"^ECDHE-(RSA|ECDSA)-(AES\d+-GCM|CHACHA20)")
        self.assertRegex(client12.read_line(), rb"^\* OK ")
        # A client that offers only CBC suites gets no handshake.
        cbc = ssl.create_default_context(cafile=SYSTEM.cert)
        cbc.maximum_version = ssl.TLSVersion.TLSv1_2
        cbc.set_ciphers("ECDHE-RSA-AES128-SHA:AES128-SHA:AES256-SHA256")
        client_cbc = RawClient(GATEWAY.imaps_port, "plain", cafile=SYSTEM.cert, read_greeting=False)
        self.clients.append(client_cbc)
        with self.assertRaises(ssl.SSLError):
            client_cbc.sock.settimeout(10)
            cbc.wrap_socket(client_cbc.sock, server_hostname="127.0.0.1")


# --- 2.2.1 - 2.2.2 Client and server protocol sender/receiver ----------------------
class ProtocolSenderReceiverTest(Base):
    def test_tags(self):
        # C0001: tag = 1*<any ASTRING-CHAR except "+">, at most 64 octets.
        client = self.connect()
        _, tagged = client.command("NOOP", tag="a.b_c-1]")
        self.assertTagged(tagged, "a.b_c-1]", "OK")
        client.send(b"a+b NOOP\r\n")
        self.assertRegex(client.read_line(), rb"^\* BAD \S")
        _, tagged = client.command("NOOP", tag="t" * 64)
        self.assertTagged(tagged, "t" * 64, "OK")
        # V0001: a repeated tag is accepted; each command is answered in order.
        client.send(b"same NOOP\r\nsame CAPABILITY\r\n")
        first = client.read_line()
        self.assertTagged(first, "same", "OK")
        lines = client.read_lines_until(lambda line: line.startswith(b"same "))
        self.assertTrue(lines[0].startswith(b"* CAPABILITY "), lines)
        self.assertTagged(lines[-1], "same", "OK")

    def test_no_unilateral_data_outside_idle(self):
        # V0002 / 2.2.9: changes are queued and reported at the next command (or at
        # once during IDLE), never written to a connection with no command in progress.
        watcher = self.connect(select="INBOX")
        other = self.connect()
        append_raw(other, "INBOX", MESSAGE)
        watcher.expect_silence(1.5)
        poll_until(watcher, "NOOP", lambda line: line == b"* 1 EXISTS")


# --- 2.2.3 - 2.2.6 Message attributes ----------------------------------------------
class MessageAttributesTest(Base):
    def test_client_defined_keywords(self):
        # E0001 / V0005: clients may define keywords ($MDNSent among them); \* in
        # PERMANENTFLAGS says so, and FLAGS lists the keywords in use.
        client = self.connect()
        append_raw(client, "INBOX", MESSAGE)
        untagged = client.ok("SELECT INBOX")
        self.assertIn(b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]"
                      b" Limited", untagged)
        lines = client.ok("STORE 1 +FLAGS ($MDNSent ProjectX)")
        # New keywords: FLAGS and PERMANENTFLAGS again, before the FETCH shows them.
        self.assertEqual(lines, [
            b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $MDNSent ProjectX)",
            b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft "
            b"$MDNSent ProjectX \\*)] Limited",
            b"* 1 FETCH (FLAGS ($MDNSent ProjectX \\Recent))"])
        untagged = client.ok("SELECT INBOX")
        self.assertIn(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $MDNSent ProjectX)",
                      untagged)
        self.assertIn(b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft "
                      b"$MDNSent ProjectX \\*)] Limited", untagged)
        # (V0054: the FLAGS response above lists the keywords in use.) A keyword
        # must be an atom.
        _, tagged = client.command("STORE 1 +FLAGS (bad\"keyword)", tag="k1")
        self.assertTagged(tagged, "k1", "BAD")

    def test_rfc822_size_is_exact(self):
        # V0006 / V0045: RFC822.SIZE is the exact octet count of the message as appended.
        client = self.connect()
        append_raw(client, "INBOX", MESSAGE)
        client.ok("SELECT INBOX")
        lines = client.ok("FETCH 1 (RFC822.SIZE)")
        self.assertEqual(lines, [b"* 1 FETCH (RFC822.SIZE %d)" % len(MESSAGE)])
        lines = client.ok("FETCH 1 (BODY.PEEK[])")
        self.assertIn(b"{%d}\r\n%s" % (len(MESSAGE), MESSAGE), lines[0])

    def test_eight_bit_header_text_is_sent_as_a_literal(self):
        # V0007: 8-bit octets in a message are sent as they are, in literals, never in
        # quoted strings; 7-bit header text is a quoted string.
        client = self.connect()
        message = b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nx\r\n"
        append_raw(client, "INBOX", message)
        client.ok("SELECT INBOX")
        lines = client.ok("FETCH 1 (ENVELOPE)")
        self.assertTrue(lines[0].startswith(b"* 1 FETCH (ENVELOPE (NIL {7}\r\nGr\xc3\xbc\xc3\x9fe "),
                        lines)


# --- 2.2.7 Mailbox naming ----------------------------------------------------------
class MailboxNamingTest(Base):
    def test_case_sensitivity(self):
        # V0008: names other than INBOX are case-sensitive; INBOX (also as the first
        # hierarchy level) is not.
        client = self.connect()
        client.ok("CREATE Work")
        client.ok("CREATE work")
        _, tagged = client.command("CREATE inbox", tag="c1")
        self.assertTagged(tagged, "c1", "NO", b"ALREADYEXISTS")
        client.ok('CREATE "inbox/Sub"')
        lines = client.ok('LIST "" *')
        self.assertEqual(lines, [b'* LIST (\\HasChildren) "/" INBOX',
                                 b'* LIST (\\HasNoChildren) "/" INBOX/Sub',
                                 b'* LIST (\\HasNoChildren) "/" Work',
                                 b'* LIST (\\HasNoChildren) "/" work'])

    def test_special_characters(self):
        # V0009 / V0030 / V0033: backslash and double quote come back as escaped
        # quoted strings; V0010: wildcards are refused; V0012: "&" must be encoded
        # as "&-", "#" is an ordinary character.
        client = self.connect()
        client.ok('CREATE "back\\\\slash"')
        client.ok('CREATE "say \\"hi\\""')
        client.ok('CREATE "#news"')
        client.ok('CREATE "R&-D"')
        client.ok('CREATE "Entw&APw-rfe"')
        for name in ('"w*c"', '"w%c"'):
            _, tagged = client.command("CREATE " + name, tag="w1")
            self.assertTagged(tagged, "w1", "BAD")
            self.assertIn(b"wildcard", tagged)
        _, tagged = client.command('CREATE "R&D"', tag="a1")
        self.assertTagged(tagged, "a1", "NO", b"CANNOT")
        self.assertIn(b"modified UTF-7", tagged)
        _, tagged = client.command(b'CREATE "Entw\xc3\xbcrfe"', tag="a2")
        self.assertTagged(tagged, "a2", "NO", b"CANNOT")
        lines = client.ok('LIST "" *')
        self.assertEqual(lines, [b'* LIST (\\HasNoChildren) "/" INBOX',
                                 b'* LIST (\\HasNoChildren) "/" #news',
                                 b'* LIST (\\HasNoChildren) "/" Entw&APw-rfe',
                                 b'* LIST (\\HasNoChildren) "/" R&-D',
                                 b'* LIST (\\HasNoChildren) "/" "back\\\\slash"',
                                 b'* LIST (\\HasNoChildren) "/" "say \\"hi\\""'])
        lines = client.ok('LSUB "" *')
        self.assertEqual(lines, [])
        client.ok('SUBSCRIBE "back\\\\slash"')
        lines = client.ok('LSUB "" *')
        self.assertEqual(lines, [b'* LSUB () "/" "back\\\\slash"'])

    def test_delimiter_and_empty_levels(self):
        # V0011: the hierarchy delimiter is "/"; empty levels are refused.
        client = self.connect()
        self.assertEqual(client.ok('LIST "" ""'), [b'* LIST (\\Noselect) "/" ""'])
        for name in ('"/lead"', '"a//b"'):
            _, tagged = client.command("CREATE " + name, tag="d1")
            self.assertTagged(tagged, "d1", "BAD")
            self.assertIn(b"empty hierarchy level", tagged)

    def test_length_and_depth_limits(self):
        # C0002 / C0003: 31 levels and 250 octets are accepted; one more is refused
        # with NO [LIMIT]; nothing is ever truncated.
        client = self.connect()
        name250 = "n" * 250
        client.ok("CREATE " + name250)
        _, tagged = client.command("CREATE " + "n" * 251, tag="l1")
        self.assertEqual(tagged, b"l1 NO [LIMIT] CREATE: mailbox name is 251 octets, "
                                 b"longer than the limit of 250")
        deep31 = "/".join(["d"] * 31)
        client.ok('CREATE "%s"' % deep31)
        _, tagged = client.command('CREATE "%s/d"' % deep31, tag="l2")
        self.assertEqual(tagged, b"l2 NO [LIMIT] CREATE: mailbox name has 32 hierarchy levels, "
                                 b"more than the limit of 31")
        lines = client.ok('LIST "" "n*"')
        self.assertEqual(lines, [b'* LIST (\\HasNoChildren) "/" ' + name250.encode()])
        lines = client.ok('LIST "" "%s"' % deep31)
        self.assertEqual(lines, [b'* LIST (\\HasNoChildren) "/" ' + deep31.encode()])
        # The limit is on the name's UTF-8 octets: 125 "ü" (250 octets) fit, 126 do not.
        umlauts = "\u00fc" * 125
        wire = "&" + base64.b64encode(umlauts.encode("utf-16-be")).decode().rstrip("=") \
            .replace("/", ",") + "-"
        client.ok('CREATE "%s"' % wire)
        umlauts = "\u00fc" * 126
        wire = "&" + base64.b64encode(umlauts.encode("utf-16-be")).decode().rstrip("=") \
            .replace("/", ",") + "-"
        _, tagged = client.command('CREATE "%s"' % wire, tag="l3")
        self.assertTagged(tagged, "l3", "NO", b"LIMIT")


# --- 2.2.8 - 2.2.11 Updates, timers, command processing ---------------------------
class SessionUpdatesTest(Base):
    def test_external_flag_change_and_expunge_reported_at_next_command(self):
        # V0013 / V0046: changes made by other sessions (or other protocols) are
        # reported as untagged FETCH/EXPUNGE at the next command that allows them.
        writer = self.connect()
        append_raw(writer, "INBOX", MESSAGE)
        append_raw(writer, "INBOX", MESSAGE)
        watcher = self.connect(select="INBOX")
        writer.ok("SELECT INBOX")
        writer.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
        poll_until(watcher, "NOOP",
                   lambda line: line == b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))")
        writer.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        writer.ok("EXPUNGE")
        # No EXPUNGE during FETCH by sequence number (RFC 3501 §7.4.1) ...
        time.sleep(0.5)
        lines = watcher.ok("FETCH 2 (UID)")
        self.assertFalse(any(b"EXPUNGE" in line for line in lines), lines)
        self.assertIn(b"* 2 FETCH (UID 2)", lines)
        # ... but at the next NOOP (CHECK behaves the same: V0036).
        lines = poll_until(watcher, "CHECK", lambda line: line == b"* 2 EXPUNGE")
        lines = watcher.ok("FETCH 1:* (UID)")
        self.assertEqual(lines, [b"* 1 FETCH (UID 1)"])


    def test_new_keywords_are_announced_before_a_fetch_shows_them(self):
        # RFC 3501 §7.2.6 / §7.1: the client learns the mailbox's keywords from FLAGS
        # (and which it may store from PERMANENTFLAGS); a FETCH must not show one
        # it was never told of.
        def first_with(lines, keyword):
            return next(i for i, line in enumerate(lines) if keyword in line)

        writer = self.connect()
        append_raw(writer, "INBOX", MESSAGE)
        watcher = self.connect()
        selected = watcher.ok("SELECT INBOX")
        self.assertFalse(any(b"$Custom1" in line for line in selected), selected)
        writer.ok("SELECT INBOX")
        writer.ok("STORE 1 +FLAGS.SILENT ($Custom1)")
        lines = poll_until(watcher, "NOOP", lambda line: b"$Custom1" in line)
        at = first_with(lines, b"$Custom1")
        self.assertTrue(lines[at].startswith(b"* FLAGS ("), lines)
        self.assertTrue(lines[at + 1].startswith(b"* OK [PERMANENTFLAGS ("), lines)
        self.assertIn(b"$Custom1 \\*)]", lines[at + 1])
        self.assertIn(b"* 1 FETCH (UID 1 FLAGS ($Custom1 \\Recent))", lines[at + 2:])
        # A keyword this session stores itself, even silently.
        untagged = watcher.ok("STORE 1 +FLAGS.SILENT (Own2)")
        self.assertEqual(len(untagged), 2, untagged)
        self.assertTrue(untagged[0].startswith(b"* FLAGS (") and b"Own2" in untagged[0])
        self.assertIn(b"$Custom1", untagged[0])
        # Told once: the next FETCH shows it with no FLAGS before.
        self.assertEqual(watcher.ok("FETCH 1 (FLAGS)"),
                         [b"* 1 FETCH (FLAGS ($Custom1 Own2 \\Recent))"])
        # A message appended with a new keyword: FLAGS comes with its EXISTS.
        append_raw(writer, "INBOX", MESSAGE, flags=b"(Third3) ")
        lines = poll_until(watcher, "NOOP", lambda line: line == b"* 2 EXISTS")
        self.assertLess(first_with(lines, b"Third3"), lines.index(b"* 2 EXISTS"), lines)
        self.assertTrue(lines[first_with(lines, b"Third3")].startswith(b"* FLAGS ("))
        # SELECT lists every keyword in use, here and where a COPY took one.
        writer.ok("CREATE Copies")
        writer.ok("COPY 1 Copies")
        for mailbox in ("INBOX", "Copies"):
            flags_line = next(line for line in self.connect().ok("SELECT " + mailbox)
                              if line.startswith(b"* FLAGS ("))
            for keyword in (b"$Custom1", b"Own2") + ((b"Third3",) if mailbox == "INBOX" else ()):
                self.assertIn(keyword, flags_line, mailbox)

    def test_logout_reports_no_pending_updates(self):
        # RFC 3501 §6.1.3: LOGOUT answers BYE and its tagged OK. Changes waiting to
        # be reported are not sent: the client no longer tracks the mailbox, and an
        # EXPUNGE would name sequence numbers it has forgotten.
        writer = self.connect()
        append_raw(writer, "INBOX", MESSAGE)
        append_raw(writer, "INBOX", MESSAGE)
        leaving = self.connect(select="INBOX")
        control = self.connect(select="INBOX")
        writer.ok("SELECT INBOX")
        writer.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
        writer.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        writer.ok("EXPUNGE")
        # The changes have reached both sessions' gateway: the control session,
        # selected just as long, is told of them at its next command.
        poll_until(control, "NOOP", lambda line: line == b"* 1 EXPUNGE")
        time.sleep(0.3)  # (the two may be on different gateway workers)
        untagged, tagged = leaving.command("LOGOUT", tag="z1")
        self.assertTagged(tagged, "z1", "OK")
        self.assertEqual(len(untagged), 1, untagged)
        self.assertTrue(untagged[0].startswith(b"* BYE "), untagged)


# --- 2.2.12 - 2.2.15 Not authenticated state, STARTTLS, AUTHENTICATE, LOGIN --------
class RecentTest(Base):
    # RFC 3501 §2.3.2: \Recent goes to the first session told of a message; §7.3.2:
    # RECENT follows a change of the mailbox's size; §6.3.10: STATUS counts it.
    def test_copy_into_a_selected_mailbox_is_recent_in_exactly_one_session(self):
        writer = self.connect()
        writer.ok("CREATE Target")
        for _ in range(3):
            append_raw(writer, "INBOX", MESSAGE)
        first = self.connect(select="Target")
        second = self.connect(select="Target")
        examiner = self.connect()
        examiner.ok("EXAMINE Target")
        writer.ok("SELECT INBOX")
        writer.ok("COPY 1:2 Target")
        sessions = [first, second]
        reports = [poll_until(client, "NOOP", lambda line: line == b"* 2 EXISTS")
                   for client in sessions]
        counts = [[line for line in lines if line.endswith(b" RECENT")] for lines in reports]
        self.assertEqual(sorted(counts), [[b"* 0 RECENT"], [b"* 2 RECENT"]], reports)
        claimer, other = (first, second) if counts[0] == [b"* 2 RECENT"] else (second, first)
        self.assertEqual(claimer.ok("FETCH 1:2 (FLAGS)"),
                         [b"* 1 FETCH (FLAGS (\\Recent))", b"* 2 FETCH (FLAGS (\\Recent))"])
        self.assertEqual(other.ok("FETCH 1:2 (FLAGS)"),
                         [b"* 1 FETCH (FLAGS ())", b"* 2 FETCH (FLAGS ())"])
        self.assertEqual(claimer.ok("SEARCH RECENT"), [b"* SEARCH 1 2"])
        self.assertEqual(other.ok("SEARCH RECENT"), [b"* SEARCH"])
        # EXAMINE claims nothing, and is told the count is unchanged.
        lines = poll_until(examiner, "NOOP", lambda line: line == b"* 2 EXISTS")
        self.assertIn(b"* 0 RECENT", lines)
        # Claimed messages are no longer counted by STATUS, as no later session
        # will see them \Recent.
        self.assertEqual(writer.ok("STATUS Target (MESSAGES RECENT)"),
                         [b"* STATUS Target (MESSAGES 2 RECENT 0)"])

    def test_status_counts_what_no_session_was_told_of(self):
        writer = self.connect()
        writer.ok("CREATE Quiet")
        watcher = self.connect(select="INBOX")
        append_raw(writer, "Quiet", MESSAGE)
        append_raw(writer, "INBOX", MESSAGE)
        # No session has Quiet selected: its message is \Recent for the next.
        self.assertEqual(writer.ok("STATUS Quiet (RECENT)"), [b"* STATUS Quiet (RECENT 1)"])
        # The watcher is told of the INBOX message, so it holds its \Recent.
        lines = poll_until(watcher, "NOOP", lambda line: line == b"* 1 EXISTS")
        self.assertIn(b"* 1 RECENT", lines)
        self.assertEqual(writer.ok("STATUS INBOX (RECENT)"), [b"* STATUS INBOX (RECENT 0)"])
        lines = watcher.ok("SELECT Quiet")
        self.assertIn(b"* 1 RECENT", lines)

    def test_examine_keeps_reporting_the_count_it_started_with(self):
        writer = self.connect()
        writer.ok("CREATE Looked")
        append_raw(writer, "Looked", MESSAGE)
        append_raw(writer, "Looked", MESSAGE)
        examiner = self.connect()
        self.assertIn(b"* 2 RECENT", examiner.ok("EXAMINE Looked"))
        append_raw(writer, "Looked", MESSAGE)
        lines = poll_until(examiner, "NOOP", lambda line: line == b"* 3 EXISTS")
        self.assertIn(b"* 2 RECENT", lines)
        # It sees those two \\Recent without taking them from the next SELECT.
        self.assertEqual(examiner.ok("SEARCH RECENT"), [b"* SEARCH 1 2"])
        selector = self.connect()
        self.assertIn(b"* 3 RECENT", selector.ok("SELECT Looked"))

    def test_idle_reports_recent_with_the_new_message(self):
        writer = self.connect()
        watcher = self.connect(select="INBOX")
        tag = watcher.tag()
        watcher.send(b"%s IDLE\r\n" % tag.encode())
        self.assertTrue(watcher.read_line().startswith(b"+ "))
        append_raw(writer, "INBOX", MESSAGE)
        self.assertEqual(watcher.read_line(), b"* 1 EXISTS")
        self.assertEqual(watcher.read_line(), b"* 1 RECENT")
        watcher.send(b"DONE\r\n")
        _, tagged = watcher.read_tagged(tag)
        self.assertTrue(tagged.startswith(tag.encode() + b" OK"), tagged)


class AuthenticationTest(Base):
    def test_no_anonymous_access(self):
        # V0018 / V0019.
        client = self.connect(login=False)
        _, tagged = client.command("AUTHENTICATE ANONYMOUS", tag="a1")
        self.assertTagged(tagged, "a1", "NO", b"CANNOT")
        _, tagged = client.command('LOGIN anonymous "guest@example.org"', tag="a2")
        self.assertTagged(tagged, "a2", "NO", b"AUTHENTICATIONFAILED")
        _, tagged = client.command("SELECT INBOX", tag="a3")
        self.assertTagged(tagged, "a3", "BAD")

    def test_mechanisms_and_no_security_layer(self):
        # E0003 / V0021: PLAIN and SCRAM-SHA-256(-PLUS: TLS 1.3 here) by default, LOGIN
        # only when turned on; success carries a CAPABILITY code (V0023).
        client = self.connect(login=False)
        caps = caps_of(client.greeting)
        self.assertEqual([c for c in caps if c.startswith(b"AUTH=")],
                         [b"AUTH=PLAIN", b"AUTH=SCRAM-SHA-256", b"AUTH=SCRAM-SHA-256-PLUS"])
        for mechanism in ("GSSAPI", "NTLM", "CRAM-MD5", "SCRAM-SHA-1", "LOGIN"):
            _, tagged = client.command("AUTHENTICATE " + mechanism, tag="m1")
            self.assertTagged(tagged, "m1", "NO", b"CANNOT")
        client.send(b"m2 AUTHENTICATE PLAIN\r\n")
        self.assertEqual(client.read_line(), b"+ ")
        client.send(base64.b64encode(b"\0%s\0%s" % (self.user.encode(), self.password.encode()))
                    + b"\r\n")
        _, tagged = client.read_tagged("m2")
        self.assertTagged(tagged, "m2", "OK", b"CAPABILITY IMAP4rev1")
        self.assertNotIn(b"AUTH=PLAIN", tagged)

    def test_plaintext_authenticate_refused_without_tls(self):
        # V0022 / V0025: without TLS both LOGIN and AUTHENTICATE get NO [PRIVACYREQUIRED].
        client = self.connect(login=False, mode="plain")
        initial = base64.b64encode(b"\0%s\0%s" % (self.user.encode(), self.password.encode()))
        _, tagged = client.command(b"AUTHENTICATE PLAIN " + initial, tag="p1")
        self.assertTagged(tagged, "p1", "NO", b"PRIVACYREQUIRED")
        _, tagged = client.command("AUTHENTICATE PLAIN", tag="p2")
        self.assertTagged(tagged, "p2", "NO", b"PRIVACYREQUIRED")

    def test_starttls_ok_has_no_capability_code(self):
        # V0020: the tagged OK of STARTTLS carries no capabilities (RFC 3501 §6.2.1:
        # the client must ask again); CAPABILITY afterwards shows the TLS set.
        client = self.connect(login=False, mode="plain")
        tagged = client.starttls(tag="s1")
        self.assertEqual(tagged, b"s1 OK Begin TLS negotiation now")
        untagged = client.ok("CAPABILITY")
        caps = untagged[0].split()
        self.assertIn(b"AUTH=PLAIN", caps)
        self.assertNotIn(b"STARTTLS", caps)
        self.assertNotIn(b"LOGINDISABLED", caps)


# --- 2.2.16 - 2.2.21 CREATE, DELETE, RENAME, SUBSCRIBE, LIST, LSUB ----------------
class MailboxCommandsTest(Base):
    def test_create_makes_superiors(self):
        # V0026.
        client = self.connect()
        client.ok('CREATE "a/b/c"')
        client.ok('CREATE "t/"')  # a trailing delimiter is dropped
        self.assertEqual(client.ok('LIST "" "*"'), [
            b'* LIST (\\HasNoChildren) "/" INBOX',
            b'* LIST (\\HasChildren) "/" a',
            b'* LIST (\\HasChildren) "/" a/b',
            b'* LIST (\\HasNoChildren) "/" a/b/c',
            b'* LIST (\\HasNoChildren) "/" t'])

    def test_delete_with_inferiors_leaves_a_noselect_name(self):
        # V0027: allowed; the name stays as \Noselect until its inferiors are gone.
        client = self.connect()
        client.ok('CREATE "p/q"')
        append_raw(client, "p", MESSAGE)
        client.ok("DELETE p")
        self.assertEqual(client.ok('LIST "" "p*"'), [
            b'* LIST (\\Noselect \\HasChildren) "/" p',
            b'* LIST (\\HasNoChildren) "/" p/q'])
        _, tagged = client.command("SELECT p", tag="d1")
        self.assertTagged(tagged, "d1", "NO")
        client.ok('DELETE "p/q"')
        client.ok("DELETE p")
        self.assertEqual(client.ok('LIST "" "p*"'), [])

    def test_rename_creates_superiors(self):
        # V0028: the new name may contain the delimiter; superiors are created.
        client = self.connect()
        client.ok("CREATE Old")
        append_raw(client, "Old", MESSAGE)
        client.ok('RENAME Old "new/deep/Name"')
        self.assertEqual(client.ok('LIST "" "*"'), [
            b'* LIST (\\HasNoChildren) "/" INBOX',
            b'* LIST (\\HasChildren) "/" new',
            b'* LIST (\\HasChildren) "/" new/deep',
            b'* LIST (\\HasNoChildren) "/" new/deep/Name'])
        lines = client.ok('STATUS "new/deep/Name" (MESSAGES)')
        self.assertEqual(lines, [b'* STATUS new/deep/Name (MESSAGES 1)'])

    def test_subscribe_does_not_require_the_mailbox(self):
        # V0029 / V0034: SUBSCRIBE is not validated; LSUB marks what cannot be
        # selected \Noselect and reports unsubscribed superiors for "%".
        client = self.connect()
        client.ok("SUBSCRIBE nosuch")
        client.ok('CREATE "x/y"')
        client.ok('SUBSCRIBE "x/y"')
        self.assertEqual(client.ok('LSUB "" "*"'), [b'* LSUB (\\Noselect) "/" nosuch',
                                                    b'* LSUB () "/" x/y'])
        self.assertEqual(client.ok('LSUB "" "%"'), [b'* LSUB (\\Noselect) "/" nosuch',
                                                    b'* LSUB (\\Noselect) "/" x'])
        self.assertEqual(client.ok('LIST (SUBSCRIBED) "" "*"'), [
            b'* LIST (\\NonExistent \\Subscribed) "/" nosuch',
            b'* LIST (\\HasNoChildren \\Subscribed) "/" x/y'])

    def test_list_reference_rules(self):
        # V0031: the reference is joined to the pattern as RFC 3501 §6.3.8 describes,
        # also when it does not end with the delimiter; V0032: nothing is hidden.
        client = self.connect()
        client.ok('CREATE "x/y"')
        self.assertEqual(client.ok('LIST "x/" "%"'), [b'* LIST (\\HasNoChildren) "/" x/y'])
        # "x" + "%" is the pattern "x%"; a pattern starting with "/" ignores the reference.
        self.assertEqual(client.ok('LIST "x" "%"'), [b'* LIST (\\HasChildren) "/" x'])
        self.assertEqual(client.ok('LIST "x" "/y"'), [])
        self.assertEqual(client.ok('LIST "x" "y"'), [])
        self.assertEqual(client.ok('LIST "" "%"'), [b'* LIST (\\HasNoChildren) "/" INBOX',
                                                    b'* LIST (\\HasChildren) "/" x'])


# --- 2.2.22 - 2.2.26 APPEND, CHECK, SEARCH, FETCH, STORE ---------------------------
class MessageCommandsTest(Base):
    def setUp(self):
        super().setUp()
        self.client = self.connect()
        append_raw(self.client, "INBOX", MESSAGE, b"(NewKw) ")
        append_raw(self.client, "INBOX",
                   MESSAGE.replace(b"Subject: standards", b"Subject: other") + b"more more\r\n")
        self.client.ok("SELECT INBOX")

    def test_search_charsets(self):
        # V0037 / V0038: US-ASCII and UTF-8; others get NO [BADCHARSET (US-ASCII UTF-8)].
        client = self.client
        self.assertEqual(client.ok("SEARCH CHARSET US-ASCII SUBJECT standards"), [b"* SEARCH 1"])
        self.assertEqual(client.ok("SEARCH CHARSET UTF-8 SUBJECT other"), [b"* SEARCH 2"])
        _, tagged = client.command("SEARCH CHARSET ISO-8859-1 SUBJECT x", tag="c1")
        self.assertTagged(tagged, "c1", "NO", b"BADCHARSET (US-ASCII UTF-8)")
        _, tagged = client.command(b'SEARCH SUBJECT "\xc3\xbc"', tag="c2")
        self.assertTagged(tagged, "c2", "BAD")
        self.assertIn(b"CHARSET UTF-8", tagged)

    def test_keyword_and_size_keys(self):
        # V0039 - V0042: any keyword; sizes compare the exact RFC822.SIZE.
        client = self.client
        self.assertEqual(client.ok("SEARCH KEYWORD NewKw"), [b"* SEARCH 1"])
        self.assertEqual(client.ok("SEARCH KEYWORD newkw"), [b"* SEARCH 1"])
        self.assertEqual(client.ok("SEARCH UNKEYWORD NewKw"), [b"* SEARCH 2"])
        self.assertEqual(client.ok("SEARCH KEYWORD Unused"), [b"* SEARCH"])
        size = len(MESSAGE)
        self.assertEqual(client.ok("SEARCH LARGER %d" % (size - 1)), [b"* SEARCH 1 2"])
        self.assertEqual(client.ok("SEARCH LARGER %d" % size), [b"* SEARCH 2"])
        self.assertEqual(client.ok("SEARCH SMALLER %d" % (size + 1)), [b"* SEARCH 1"])
        self.assertEqual(client.ok("SEARCH SMALLER %d" % size), [b"* SEARCH"])

    def test_search_nesting_limit(self):
        # V0043: 31 nested parenthesised groups are accepted (the seed: 10), 32 get BAD.
        client = self.client
        self.assertEqual(client.ok("SEARCH " + "(" * 31 + "ALL" + ")" * 31), [b"* SEARCH 1 2"])
        self.assertEqual(client.ok("SEARCH (SUBJECT x (OR SUBJECT standards (OR SUBJECT y "
                                   "(OR SUBJECT z ALL))))"), [b"* SEARCH"])
        self.assertEqual(client.ok("SEARCH OR SUBJECT other (OR SUBJECT y (OR SUBJECT z "
                                   "(SUBJECT w)))"), [b"* SEARCH 2"])
        _, tagged = client.command("SEARCH " + "(" * 32 + "ALL" + ")" * 32, tag="n1")
        self.assertTagged(tagged, "n1", "BAD")
        self.assertIn(b"nesting", tagged)

    def test_fetch_dynamic_items_change_static_ones_never(self):
        # V0044: FLAGS (and MODSEQ) change; everything else of a UID is immutable.
        client = self.client
        before = client.ok("FETCH 1 (UID RFC822.SIZE ENVELOPE BODYSTRUCTURE INTERNALDATE)")
        client.ok("STORE 1 +FLAGS (\\Answered)")
        lines = client.ok("FETCH 1 (FLAGS)")
        self.assertEqual(lines, [b"* 1 FETCH (FLAGS (\\Answered NewKw \\Recent))"])
        after = client.ok("FETCH 1 (UID RFC822.SIZE ENVELOPE BODYSTRUCTURE INTERNALDATE)")
        self.assertEqual(before, after)

    def test_check_is_noop(self):
        # V0036: CHECK does what NOOP does (reports pending changes); there is nothing
        # to checkpoint, every acknowledged change is already committed.
        other = self.connect(select="INBOX")
        other.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
        lines = poll_until(self.client, "CHECK", lambda line: re.match(
            rb"^\* 2 FETCH \(UID 2 FLAGS \([^)]*\\Seen", line) is not None)
        _, tagged = self.client.command("CHECK", tag="k1")
        self.assertEqual(tagged, b"k1 OK CHECK completed")


# --- 2.2.27 - 2.2.36 Extensions and server responses --------------------------------
class ResponsesTest(Base):
    def test_unknown_and_experimental_commands(self):
        # V0047: no X-commands; an unknown command is BAD and the session goes on.
        client = self.connect()
        for tag, command in (("x1", "XLIST \"\" *"), ("x2", "X-FOO"), ("x3", "FROB")):
            _, tagged = client.command(command, tag=tag)
            self.assertTagged(tagged, tag, "BAD")
            self.assertIn(b"unknown command", tagged)
        self.assertTrue(client.alive())

    def test_greeting_is_ok_never_preauth(self):
        # V0051 / V0052: the greeting is OK with a CAPABILITY code, never PREAUTH.
        client = self.connect(login=False)
        self.assertRegex(client.greeting, rb"^\* OK \[CAPABILITY IMAP4rev1 [^\]]+\] imapd ready$")

    def test_select_response_codes(self):
        # V0048 / V0050: untagged OKs carry response codes on SELECT.
        client = self.connect()
        append_raw(client, "INBOX", MESSAGE)
        untagged = client.ok("SELECT INBOX")
        codes = [re.match(rb"^\* OK \[([A-Z-]+)", line).group(1)
                 for line in untagged if line.startswith(b"* OK")]
        self.assertEqual(codes, [b"UNSEEN", b"UIDVALIDITY", b"UIDNEXT", b"PERMANENTFLAGS",
                                 b"HIGHESTMODSEQ", b"MAILBOXID"])
        _, tagged = client.command("EXAMINE INBOX", tag="e1")
        self.assertTagged(tagged, "e1", "OK", b"READ-ONLY")

    def test_expunge_sends_no_exists(self):
        # V0055: after EXPUNGE only the EXPUNGE responses; the count is implied.
        client = self.connect()
        for _ in range(3):
            append_raw(client, "INBOX", MESSAGE)
        client.ok("SELECT INBOX")
        client.ok("STORE 1,3 +FLAGS.SILENT (\\Deleted)")
        lines = client.ok("EXPUNGE")
        self.assertEqual(lines, [b"* 1 EXPUNGE", b"* 2 EXPUNGE"])

    def test_bodystructure_extension_data_and_envelope_nil(self):
        # V0056: BODYSTRUCTURE has extension data, BODY none. V0057: an empty header
        # is "", an absent one NIL.
        client = self.connect()
        message = (b"Subject:\r\n"
                   b"MIME-Version: 1.0\r\n"
                   b"Content-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Language: de\r\n"
                   b"\r\n"
                   b"hallo\r\n")
        append_raw(client, "INBOX", message)
        client.ok("SELECT INBOX")
        lines = client.ok("FETCH 1 (BODY BODYSTRUCTURE ENVELOPE)")
        self.assertEqual(lines, [
            b'* 1 FETCH (BODY ("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 7 1) '
            b'BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 7 1 NIL NIL '
            b'"de" NIL) '
            b'ENVELOPE (NIL "" NIL NIL NIL NIL NIL NIL NIL NIL))'])

    def test_literal_in_uid_search_gets_a_continuation(self):
        # V0058: every synchronizing literal is answered with "+", UID SEARCH included.
        client = self.connect()
        append_raw(client, "INBOX", MESSAGE)
        client.ok("SELECT INBOX")
        client.send(b"u1 UID SEARCH SUBJECT {9}\r\n")
        self.assertEqual(client.read_line(), b"+ Ready for literal data")
        client.send(b"standards\r\n")
        untagged, tagged = client.read_tagged("u1")
        self.assertEqual(untagged, [b"* SEARCH 1"])
        self.assertTagged(tagged, "u1", "OK")


# --- Leniencies --------------------------------------------------------------------
class LeniencyTest(Base):
    def test_utf8_in_quoted_strings(self):
        # RFC 3501 quoted strings are 7-bit; UTF-8 is accepted (RFC 9051 allows it).
        client = self.connect()
        append_raw(client, "INBOX", b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nx\r\n")
        client.ok("SELECT INBOX")
        lines = client.ok(b'SEARCH CHARSET UTF-8 SUBJECT "Gr\xc3\xbc\xc3\x9f"')
        self.assertEqual(lines, [b"* SEARCH 1"])

    def test_unpadded_base64_in_sasl(self):
        # RFC 4648 padding may be left out of a SASL response.
        SYSTEM.add_user("lenientuser", "pw-1")
        client = self.connect(login=False)
        initial = base64.b64encode(b"\0lenientuser\0pw-1")
        self.assertTrue(initial.endswith(b"="))
        initial = initial.rstrip(b"=")
        _, tagged = client.command(b"AUTHENTICATE PLAIN " + initial, tag="b1")
        self.assertTagged(tagged, "b1", "OK")



# --- RFC 7162 CONDSTORE details ------------------------------------------------------
def highest_modseq_of(lines):
    return next(int(re.search(rb"HIGHESTMODSEQ (\d+)", line).group(1))
                for line in lines if b"HIGHESTMODSEQ" in line)


def uidvalidity_of(lines):
    return next(int(re.search(rb"UIDVALIDITY (\d+)", line).group(1))
                for line in lines if b"UIDVALIDITY" in line)


class QresyncTest(Base):
    # RFC 7162 §3.2.
    def qresync_client(self):
        client = self.connect()
        self.assertIn(b"QRESYNC", client.ok("CAPABILITY")[0].split())
        self.assertEqual(client.ok("ENABLE QRESYNC"), [b"* ENABLED QRESYNC"])
        return client

    def test_refused_until_enabled_and_only_on_uid_fetch(self):
        client = self.connect()
        append_raw(client, "INBOX", MESSAGE)
        client.ok("SELECT INBOX")
        tag = client.tag()
        client.send(b"%s SELECT INBOX (QRESYNC (1 1))\r\n" % tag.encode())
        _, tagged = client.read_tagged(tag)
        self.assertTagged(tagged, tag, "BAD")
        # A BAD changes nothing: INBOX is still selected.
        self.assertEqual(client.ok("FETCH 1 (UID)"), [b"* 1 FETCH (UID 1)"])
        line = client.command("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", tag="v1")
        self.assertTagged(line[-1], "v1", "BAD")
        client.ok("UNSELECT")
        client.ok("ENABLE QRESYNC")
        client.ok("SELECT INBOX")
        line = client.command("FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", tag="v2")
        self.assertTagged(line[-1], "v2", "BAD")
        line = client.command("UID FETCH 1:* (FLAGS) (VANISHED)", tag="v3")
        self.assertTagged(line[-1], "v3", "BAD")

    def test_select_reports_what_changed_since_the_clients_modseq(self):
        writer = self.connect()
        for _ in range(6):
            append_raw(writer, "INBOX", MESSAGE)
        client = self.qresync_client()
        selected = client.ok("SELECT INBOX")
        validity, known = uidvalidity_of(selected), highest_modseq_of(selected)
        client.ok("UNSELECT")
        writer.ok("SELECT INBOX")
        writer.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
        writer.ok("STORE 3:4 +FLAGS.SILENT (\\Deleted)")
        writer.ok("EXPUNGE")
        writer.ok("UID STORE 5 +FLAGS.SILENT (\\Deleted)")
        writer.ok("EXPUNGE")
        lines = client.ok("SELECT INBOX (QRESYNC (%d %d))" % (validity, known))
        vanished = lines.index(b"* VANISHED (EARLIER) 3:5")
        fetches = [line for line in lines if b" FETCH " in line]
        self.assertEqual(len(fetches), 1, lines)
        self.assertRegex(fetches[0], rb"^\* 2 FETCH \(FLAGS \(\\Seen\) UID 2 MODSEQ \(\d+\)\)$")
        self.assertLess(vanished, lines.index(fetches[0]))
        self.assertIn(b"* 3 EXISTS", lines)
        # Known UIDs narrow both reports; the selected mailbox is closed first.
        lines = client.ok("SELECT INBOX (QRESYNC (%d %d 1,4:6))" % (validity, known))
        self.assertEqual(lines[0], b"* OK [CLOSED] Previous mailbox closed")
        self.assertIn(b"* VANISHED (EARLIER) 4:5", lines)
        self.assertFalse(any(b" FETCH " in line for line in lines), lines)
        # seq-match-data: message 1 is still UID 1 and 2 is UID 2, so the client
        # knows of no expunge below UID 3; it does not hold for 3 (now UID 6).
        lines = client.ok("EXAMINE INBOX (QRESYNC (%d %d 1:6 (1:3 1:3)))" % (validity, known))
        self.assertIn(b"* VANISHED (EARLIER) 3:5", lines)
        # Another UIDVALIDITY: a plain SELECT, nothing more.
        lines = client.ok("SELECT INBOX (QRESYNC (%d %d))" % (validity + 1, known))
        self.assertFalse(any(b"VANISHED" in line or b" FETCH " in line for line in lines), lines)
        # From MODSEQ 0, every message's flags and every absent UID.
        lines = client.ok("SELECT INBOX (QRESYNC (%d 0))" % validity)
        self.assertIn(b"* VANISHED (EARLIER) 3:5", lines)
        self.assertEqual(len([line for line in lines if b" FETCH " in line]), 3, lines)

    def test_expunges_are_reported_with_vanished_once_enabled(self):
        writer = self.connect()
        for _ in range(4):
            append_raw(writer, "INBOX", MESSAGE)
        client = self.qresync_client()
        client.ok("SELECT INBOX")
        writer.ok("SELECT INBOX")
        writer.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        writer.ok("EXPUNGE")
        lines = poll_until(client, "NOOP", lambda line: line.startswith(b"* VANISHED"))
        self.assertIn(b"* VANISHED 1", lines)
        self.assertFalse(any(line.endswith(b" EXPUNGE") for line in lines), lines)
        client.ok("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
        tag = client.tag()
        client.send(b"%s EXPUNGE\r\n" % tag.encode())
        untagged, tagged = client.read_tagged(tag)
        self.assertEqual(untagged, [b"* VANISHED 2:3"])
        self.assertTagged(tagged, tag, "OK", b"HIGHESTMODSEQ ")
        # UID FETCH with VANISHED: the expunged UIDs of the set, then the changes;
        # "*" reaches past the highest UID left, which was expunged too.
        since = highest_modseq_of([tagged]) - 3
        client.ok("UID STORE 4 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(client.ok("UID EXPUNGE 4"), [b"* VANISHED 4"])
        lines = client.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % since)
        self.assertEqual(lines, [b"* VANISHED (EARLIER) 1:4"])

    def test_closed_when_a_selection_replaces_another(self):
        # RFC 7162 §3.2.11: whether or not anything was enabled.
        client = self.connect()
        client.ok("CREATE Other")
        client.ok("SELECT INBOX")
        lines = client.ok("EXAMINE Other")
        self.assertEqual(lines[0], b"* OK [CLOSED] Previous mailbox closed")
        self.assertFalse(any(b"CLOSED" in line for line in client.ok("SELECT INBOX")[1:]))


class SmallExtensionsTest(Base):
    def test_status_size_and_appendlimit(self):
        # RFC 8438 STATUS=SIZE; RFC 7889 APPENDLIMIT (one limit for every mailbox).
        client = self.connect()
        caps = client.ok("CAPABILITY")[0].split()
        self.assertIn(b"STATUS=SIZE", caps)
        limit = next(int(c.split(b"=")[1]) for c in caps if c.startswith(b"APPENDLIMIT="))
        self.assertGreater(limit, 0)
        append_raw(client, "INBOX", MESSAGE)
        self.assertEqual(client.ok("STATUS INBOX (MESSAGES SIZE APPENDLIMIT)"),
                         [b"* STATUS INBOX (MESSAGES 1 SIZE %d APPENDLIMIT %d)"
                          % (len(MESSAGE), limit)])
        lines = client.ok('LIST "" INBOX RETURN (STATUS (APPENDLIMIT))')
        self.assertIn(b"* STATUS INBOX (APPENDLIMIT %d)" % limit, lines)

    def test_searchres_saves_a_result_for_later_commands(self):
        # RFC 5182.
        client = self.connect()
        self.assertIn(b"SEARCHRES", client.ok("CAPABILITY")[0].split())
        for _ in range(5):
            append_raw(client, "INBOX", MESSAGE)
        client.ok("SELECT INBOX")
        self.assertEqual(client.ok("FETCH $ (UID)"), [])  # nothing saved yet: empty
        client.ok("STORE 2,4:5 +FLAGS.SILENT (\\Flagged)")
        # SAVE alone: no response, the result goes to "$".
        self.assertEqual(client.ok("SEARCH RETURN (SAVE) FLAGGED"), [])
        self.assertEqual(client.ok("FETCH $ (UID)"),
                         [b"* 2 FETCH (UID 2)", b"* 4 FETCH (UID 4)", b"* 5 FETCH (UID 5)"])
        self.assertEqual(client.ok("UID SEARCH UID $ NOT UID 4"), [b"* SEARCH 2 5"])
        client.ok("UID STORE $ +FLAGS.SILENT (\\Seen)")
        self.assertEqual(client.ok("SEARCH SEEN"), [b"* SEARCH 2 4 5"])
        # Expunged messages leave "$"; numbers follow the view.
        client.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
        client.ok("EXPUNGE")
        self.assertEqual(client.ok("FETCH $ (UID)"), [b"* 3 FETCH (UID 4)", b"* 4 FETCH (UID 5)"])
        # With MIN/MAX, "$" holds just those; the other options answer as usual.
        lines = client.ok("UID SEARCH RETURN (SAVE MIN COUNT) ALL")
        self.assertRegex(lines[0], rb"^\* ESEARCH \(TAG \"[^\"]+\"\) UID MIN 1 COUNT 4$")
        self.assertEqual(client.ok("UID FETCH $ (UID)"),
                         [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 3)", b"* 3 FETCH (UID 4)",
                          b"* 4 FETCH (UID 5)"])
        client.ok("SEARCH RETURN (SAVE MAX) ALL")
        self.assertEqual(client.ok("FETCH $ (UID)"), [b"* 4 FETCH (UID 5)"])
        # A new selection forgets it.
        client.ok("SELECT INBOX")
        self.assertEqual(client.ok("FETCH $ (UID)"), [])

    def test_objectid(self):
        # RFC 8474: MAILBOXID on CREATE, SELECT and STATUS, kept by RENAME; EMAILID
        # kept by COPY and MOVE; THREADID NIL; SEARCH EMAILID / THREADID.
        client = self.connect()
        self.assertIn(b"OBJECTID", client.ok("CAPABILITY")[0].split())
        tag = client.tag()
        client.send(b"%s CREATE Things\r\n" % tag.encode())
        _, tagged = client.read_tagged(tag)
        created = re.search(rb"\[MAILBOXID \(([A-Za-z0-9_-]+)\)\]", tagged).group(1)
        self.assertEqual(client.ok("STATUS Things (MAILBOXID MESSAGES)"),
                         [b"* STATUS Things (MAILBOXID (%s) MESSAGES 0)" % created])
        client.ok("RENAME Things Stuff")
        self.assertIn(b"* OK [MAILBOXID (%s)] Ok" % created, client.ok("SELECT Stuff"))
        append_raw(client, "INBOX", MESSAGE)
        append_raw(client, "INBOX", MESSAGE.replace(b"standards", b"other one"))
        client.ok("SELECT INBOX")
        lines = client.ok("FETCH 1:2 (EMAILID THREADID)")
        ids = [re.search(rb"EMAILID \(([A-Za-z0-9_-]+)\)", line).group(1) for line in lines]
        self.assertNotEqual(ids[0], ids[1])
        self.assertIn(b"THREADID NIL", lines[0])
        client.ok("COPY 1 Stuff")
        client.ok("MOVE 2 Stuff")
        client.ok("SELECT Stuff")
        moved = client.ok("FETCH 1:2 (EMAILID)")
        self.assertEqual([re.search(rb"EMAILID \(([^)]+)\)", line).group(1) for line in moved], ids)
        self.assertEqual(client.ok("SEARCH EMAILID %s" % ids[1].decode()), [b"* SEARCH 2"])
        self.assertEqual(client.ok("SEARCH THREADID T1"), [b"* SEARCH"])
        line = client.command("SEARCH EMAILID a.b", tag="o1")
        self.assertTagged(line[-1], "o1", "BAD")
        # Deleted and made again: another mailbox, another id.
        client.ok("UNSELECT")
        client.ok("DELETE Stuff")
        tag = client.tag()
        client.send(b"%s CREATE Stuff\r\n" % tag.encode())
        _, tagged = client.read_tagged(tag)
        self.assertNotIn(b"(%s)" % created, tagged)

    def test_within_older_and_younger(self):
        # RFC 5032: intervals in seconds back from now, on the internal date.
        client = self.connect()
        self.assertIn(b"WITHIN", client.ok("CAPABILITY")[0].split())
        tag = client.tag()
        old = b"%s APPEND INBOX \"01-Jan-2020 00:00:00 +0000\" {%d+}\r\n%s\r\n" % (
            tag.encode(), len(MESSAGE), MESSAGE)
        client.send(old)
        client.read_tagged(tag)
        append_raw(client, "INBOX", MESSAGE)  # now
        client.ok("SELECT INBOX")
        self.assertEqual(client.ok("SEARCH OLDER 86400"), [b"* SEARCH 1"])
        self.assertEqual(client.ok("SEARCH YOUNGER 86400"), [b"* SEARCH 2"])
        self.assertEqual(client.ok("SEARCH NOT YOUNGER 3600"), [b"* SEARCH 1"])
        line = client.command("SEARCH OLDER 0", tag="w1")
        self.assertTagged(line[-1], "w1", "BAD")



def preview_of(line):
    """The PREVIEW value of a FETCH line: bytes, or None for NIL."""
    match = re.search(rb"PREVIEW (NIL|\{(\d+)\}\r\n|\"((?:[^\"\\\\]|\\\\.)*)\")", line)
    assert match, "no PREVIEW in %r" % line
    if match.group(1) == b"NIL":
        return None
    if match.group(2) is not None:
        start = match.end()
        return line[start:start + int(match.group(2))]
    return re.sub(rb"\\\\(.)", rb"\1", match.group(3))


def savedate_of(line):
    """The SAVEDATE of a FETCH line as a UTC datetime, or None for NIL."""
    match = re.search(rb'SAVEDATE (NIL|"([^"]+)")', line)
    assert match, "no SAVEDATE in %r" % line
    if match.group(1) == b"NIL":
        return None
    return datetime.datetime.strptime(match.group(2).decode().strip(), "%d-%b-%Y %H:%M:%S %z")


class SaveDateTest(Base):
    """RFC 8514: the time each copy was saved into its mailbox."""

    def append_dated(self, client, mailbox, message, date):
        tag = client.tag()
        client.send(b'%s APPEND %s "%s" {%d+}\r\n%s\r\n'
                    % (tag.encode(), mailbox.encode(), date.encode(), len(message), message))
        _, tagged = client.read_tagged(tag)
        self.assertTrue(tagged.startswith(tag.encode() + b" OK"), tagged)

    def test_fetch_savedate_after_append_copy_and_move(self):
        client = self.connect()
        self.assertIn(b"SAVEDATE", client.ok("CAPABILITY")[0].split())
        before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        self.append_dated(client, "INBOX", MESSAGE, "01-Jan-2020 00:00:00 +0000")
        append_raw(client, "INBOX", MESSAGE.replace(b"standards", b"moved one"))
        client.ok("CREATE Saved")
        client.ok("SELECT INBOX")
        lines = client.ok("FETCH 1:2 (SAVEDATE INTERNALDATE)")
        appended = [savedate_of(line) for line in lines]
        after = datetime.datetime.now(datetime.timezone.utc)
        for saved in appended:
            self.assertTrue(before <= saved <= after, (before, saved, after))
        self.assertIn(b'INTERNALDATE " 1-Jan-2020 00:00:00 +0000"', lines[0])
        # The copy is saved when it is made, not when the original was.
        time.sleep(1.1)
        client.ok("COPY 1 Saved")
        client.ok("MOVE 2 Saved")
        client.ok("SELECT Saved")
        lines = client.ok("UID FETCH 1:* (SAVEDATE INTERNALDATE)")
        self.assertEqual(len(lines), 2)
        copies = [savedate_of(line) for line in lines]
        self.assertGreater(copies[0], appended[0])
        self.assertGreater(copies[1], appended[1])
        self.assertIn(b'INTERNALDATE " 1-Jan-2020 00:00:00 +0000"', lines[0])
        client.ok("SELECT INBOX")
        self.assertEqual([savedate_of(line) for line in client.ok("FETCH 1 (SAVEDATE)")],
                         appended[:1])

    def test_search_saved_keys(self):
        client = self.connect()
        self.append_dated(client, "INBOX", MESSAGE, "01-Jan-2020 00:00:00 +0000")
        append_raw(client, "INBOX", MESSAGE)
        client.ok("SELECT INBOX")
        today = datetime.datetime.now(datetime.timezone.utc).date()
        day = lambda d: "%d-%s-%d" % (d.day, d.strftime("%b"), d.year)  # noqa: E731
        tomorrow = today + datetime.timedelta(days=1)
        self.assertEqual(client.ok("SEARCH SAVEDATESUPPORTED"), [b"* SEARCH 1 2"])
        self.assertEqual(client.ok("SEARCH SAVEDON %s" % day(today)), [b"* SEARCH 1 2"])
        self.assertEqual(client.ok("SEARCH SAVEDSINCE %s" % day(today)), [b"* SEARCH 1 2"])
        self.assertEqual(client.ok("SEARCH SAVEDSINCE %s" % day(tomorrow)), [b"* SEARCH"])
        self.assertEqual(client.ok("SEARCH SAVEDBEFORE %s" % day(today)), [b"* SEARCH"])
        self.assertEqual(client.ok("SEARCH SAVEDBEFORE %s" % day(tomorrow)), [b"* SEARCH 1 2"])
        # The save date, not the internal date.
        self.assertEqual(client.ok("SEARCH ON 1-Jan-2020"), [b"* SEARCH 1"])
        self.assertEqual(client.ok("SEARCH SAVEDON 1-Jan-2020"), [b"* SEARCH"])
        self.assertEqual(client.ok("UID SEARCH NOT SAVEDBEFORE %s" % day(today)),
                         [b"* SEARCH 1 2"])
        for tag, bad in (("s1", "SEARCH SAVEDON"), ("s2", "SEARCH SAVEDSINCE 2024-01-01"),
                         ("s3", "SEARCH SAVEDBEFORE 32-Jan-2024"),
                         ("s4", "SEARCH SAVEDATESUPPORTED 1-Jan-2024"),
                         ("s5", "FETCH 1 (SAVEDATE (LAZY))")):
            line = client.command(bad, tag=tag)
            self.assertTagged(line[-1], tag, "BAD")


class PreviewTest(Base):
    """RFC 8970: previews made by the mailbox service when a message is stored."""

    def fetch_preview(self, client, message, item="PREVIEW"):
        append_raw(client, "INBOX", message)
        client.ok("SELECT INBOX")
        lines = client.ok("FETCH * (%s)" % item)
        self.assertEqual(len(lines), 1, lines)
        return preview_of(lines[0])

    def test_plain_text(self):
        client = self.connect()
        self.assertIn(b"PREVIEW", client.ok("CAPABILITY")[0].split())
        self.assertEqual(self.fetch_preview(client, MESSAGE), b"Body of the standards test.")

    def test_multipart_alternative_prefers_the_plain_part(self):
        message = (b"Subject: alt\r\nMIME-Version: 1.0\r\n"
                   b"Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n"
                   b"--b\r\nContent-Type: text/html\r\n\r\n<p>The <i>HTML</i> one</p>\r\n"
                   b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                   b"The   plain\r\n  one\r\n--b--\r\n")
        self.assertEqual(self.fetch_preview(self.connect(), message), b"The plain one")

    def test_html_only_loses_its_markup(self):
        message = (b"Subject: html\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n"
                   b"<html><head><title>Title</title><style>p {}</style></head><body>"
                   b"<p>Dear <b>reader</b>,</p><p>fish &amp; chips</p><!-- hidden -->"
                   b"</body></html>\r\n")
        self.assertEqual(self.fetch_preview(self.connect(), message),
                         b"Dear reader, fish & chips")

    def test_no_text_gives_an_empty_preview(self):
        message = (b"Subject: picture\r\nContent-Type: image/png\r\n"
                   b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n")
        self.assertEqual(self.fetch_preview(self.connect(), message), b"")

    def test_long_text_is_cut_at_256_characters_of_intact_utf8(self):
        body = ("\u00e9t\u00e9 " * 200).encode("utf-8")  # 3 characters and a space, 200 times
        message = (b"Subject: long\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body + b"\r\n")
        preview = self.fetch_preview(self.connect(), message).decode("utf-8")  # intact
        self.assertLessEqual(len(preview), 256)
        self.assertGreater(len(preview), 250)
        self.assertTrue(("\u00e9t\u00e9 " * 200).startswith(preview))
        self.assertFalse(preview.endswith(" "))

    def test_lazy_modifier(self):
        client = self.connect()
        self.assertEqual(self.fetch_preview(client, MESSAGE, "PREVIEW (LAZY)"),
                         b"Body of the standards test.")
        # Alone after the sequence set, and beside other items and modifiers.
        lines = client.ok("FETCH 1 PREVIEW (LAZY)")
        self.assertEqual(preview_of(lines[0]), b"Body of the standards test.")
        # CHANGEDSINCE enables CONDSTORE: an untagged OK [HIGHESTMODSEQ] comes first.
        lines = client.ok("UID FETCH 1 (UID PREVIEW (lazy) FLAGS) (CHANGEDSINCE 0)")
        lines = [line for line in lines if b" FETCH " in line]
        self.assertRegex(lines[0], rb"^\* 1 FETCH \(UID 1 PREVIEW \"Body of the standards test.\" "
                                   rb"FLAGS \(\\Recent\) MODSEQ \(\d+\)\)$")

    def test_bad_syntax(self):
        client = self.connect()
        append_raw(client, "INBOX", MESSAGE)
        client.ok("SELECT INBOX")
        for tag, bad in (("p1", "FETCH 1 (PREVIEW (FOO))"), ("p2", "FETCH 1 (PREVIEW ())"),
                         ("p3", "FETCH 1 (PREVIEW (LAZY LAZY))"),
                         ("p4", "FETCH 1 (PREVIEW (LAZY)"), ("p5", "FETCH 1 PREVIEW (FOO)"),
                         ("p6", "FETCH 1 (PREVIEW.PEEK)"), ("p7", "FETCH 1 (PREVIEW[1])")):
            line = client.command(bad, tag=tag)
            self.assertTagged(line[-1], tag, "BAD")
class CompressTest(Base):
    """RFC 4978 COMPRESS=DEFLATE over implicit TLS: the whole protocol through raw
    deflate in both directions (Python's zlib as the client's side)."""

    def test_compressed_session_carries_append_select_fetch_and_idle(self):
        client = self.connect()
        self.assertIn(b"COMPRESS=DEFLATE", client.ok("CAPABILITY")[0].split())
        tagged = client.compress(tag="z1")
        self.assertEqual(tagged, b"z1 OK DEFLATE active")
        # A synchronizing literal: the continuation request comes compressed.
        body = b"".join(b"line %d of a compressed message\r\n" % i for i in range(400))
        message = MESSAGE + body
        client.send(b"a1 APPEND INBOX (\\Seen) {%d}\r\n" % len(message))
        client.expect_continuation()
        client.send(message + b"\r\n")
        _, tagged = client.read_tagged("a1")
        self.assertTagged(tagged, "a1", "OK", b"APPENDUID")
        append_raw(client, "INBOX", MESSAGE)  # LITERAL+
        untagged = client.ok("SELECT INBOX")
        self.assertIn(b"* 2 EXISTS", untagged)
        fetched = client.ok("FETCH 1 (FLAGS BODY.PEEK[])")
        self.assertEqual(fetched[0], b"* 1 FETCH (FLAGS (\\Seen \\Recent) BODY[] {%d}\r\n%s)"
                         % (len(message), message))
        # A second COMPRESS (§3), and the capability is no longer offered.
        _, again = client.command("COMPRESS DEFLATE", tag="z2")
        self.assertTagged(again, "z2", "NO", b"COMPRESSIONACTIVE")
        self.assertNotIn(b"COMPRESS=DEFLATE", client.ok("CAPABILITY")[0].split())
        # IDLE: the update another session causes is written, compressed, while the
        # gateway waits for DONE.
        client.send(b"i1 IDLE\r\n")
        client.expect_continuation()
        other = self.connect()
        append_raw(other, "INBOX", MESSAGE)
        self.assertEqual(client.read_line(), b"* 3 EXISTS")
        client.send(b"DONE\r\n")
        _, tagged = client.read_tagged("i1")
        self.assertTagged(tagged, "i1", "OK")
        untagged, tagged = client.command("LOGOUT", tag="o1")
        self.assertTrue(untagged[0].startswith(b"* BYE"), untagged)
        self.assertTagged(tagged, "o1", "OK")

    def test_plaintext_connection_compresses_too(self):
        client = self.connect(gateway=PLAINTEXT_GATEWAY, mode="plain")
        self.assertEqual(client.compress(tag="z1"), b"z1 OK DEFLATE active")
        self.assertEqual(client.ok("LIST \"\" INBOX"), [b'* LIST (\\HasNoChildren) "/" INBOX'])

    def test_refusals_say_what_to_do(self):
        client = self.connect(login=False)
        _, tagged = client.command("COMPRESS DEFLATE", tag="z1")
        self.assertEqual(tagged, b"z1 BAD COMPRESS is not allowed before LOGIN or AUTHENTICATE")
        client.login(self.user, self.password)
        _, tagged = client.command("COMPRESS LZ4", tag="z2")
        self.assertEqual(tagged,
                         b"z2 BAD Unknown compression algorithm LZ4: this server offers "
                         b"COMPRESS DEFLATE")
        _, tagged = client.command("COMPRESS", tag="z3")
        self.assertTagged(tagged, "z3", "BAD")
        self.assertTrue(client.alive())

    def test_corrupt_stream_ends_only_that_connection(self):
        bystander = self.connect()
        client = self.connect(select="INBOX")
        self.assertEqual(client.compress(tag="z1"), b"z1 OK DEFLATE active")
        self.assertEqual(client.ok("NOOP"), [])
        # Block type 3 is reserved (RFC 1951 §3.2.3): the stream cannot be read on.
        client.send_raw(b"\x07 not deflate\r\n")
        with self.assertRaises(ConnectionClosed):
            client.read_line()
        self.assertTrue(bystander.alive())
        deadline = time.monotonic() + 5
        while b"invalid compressed data" not in GATEWAY.log().encode():
            self.assertLess(time.monotonic(), deadline, GATEWAY.log()[-2000:])
            time.sleep(0.05)

    def test_a_flood_is_cut_off(self):
        # 64 MiB of one command line compress to about 64 KiB; the gateway stops
        # inflating past its ratio and closes the connection.
        client = self.connect()
        self.assertEqual(client.compress(tag="z1"), b"z1 OK DEFLATE active")
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        flood = deflater.compress(b"f1 FLOOD ")
        chunk = b"a" * (1 << 20)
        for _ in range(64):
            flood += deflater.compress(chunk)
        flood += deflater.flush(zlib.Z_SYNC_FLUSH)
        self.assertLess(len(flood), 256 << 10)
        try:
            client.send_raw(flood)
        except OSError:
            pass  # closed while the flood was still on its way
        with self.assertRaises(ConnectionClosed):
            client.read_lines_until(lambda line: False)
        self.assertIn("expands beyond the allowed ratio", GATEWAY.log())


class CompressLimitTest(unittest.TestCase):
    # --max-compressed-connections: at the bound, NO [LIMIT] and the session goes on
    # uncompressed; 0 turns COMPRESS off, and it is not advertised.
    def test_bound_and_disabled(self):
        system = harness.System("std-compress")
        try:
            system.start_service()
            bounded = system.start_gateway("--max-compressed-connections=1")
            disabled = system.start_gateway("--max-compressed-connections=0")
            user, password = system.new_user("z")
            first = RawClient(bounded.imaps_port, "tls", cafile=system.cert)
            first.login(user, password)
            self.assertTrue(first.compress(tag="z1").startswith(b"z1 OK"))
            second = RawClient(bounded.imaps_port, "tls", cafile=system.cert)
            second.login(user, password)
            tagged = second.compress(tag="z2")
            self.assertTrue(tagged.startswith(b"z2 NO [LIMIT] Too many compressed connections"),
                            tagged)
            self.assertEqual(second.ok("NOOP"), [])
            first.close()
            deadline = time.monotonic() + 5
            while True:  # the slot comes back when the first session has ended
                tagged = second.compress()
                if b"OK" in tagged or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            self.assertIn(b"OK DEFLATE active", tagged)
            self.assertEqual(second.ok("NOOP"), [])
            off = RawClient(disabled.imaps_port, "tls", cafile=system.cert)
            off.login(user, password)
            self.assertNotIn(b"COMPRESS=DEFLATE", off.ok("CAPABILITY")[0].split())
            _, tagged = off.command("COMPRESS DEFLATE", tag="z3")
            self.assertTrue(tagged.startswith(b"z3 NO [CANNOT]"), tagged)
            for client in (second, off):
                client.close()
            self.assertTrue(bounded.alive() and disabled.alive())
        finally:
            system.stop()


class OAuthBearerTest(unittest.TestCase):
    # RFC 7628 (OAUTHBEARER) and XOAUTH2 from Python's imaplib with an authobject:
    # the mailbox service checks the tokens against a JWK Set (--oauth-jwks), the
    # gateway offers the mechanisms over TLS with --oauth.
    @classmethod
    def setUpClass(cls):
        cls.system = harness.System("std-oauth")
        try:
            cls.issuer = harness.OAuthIssuer(cls.system.dir)
            cls.system.start_service(*cls.issuer.service_flags())
            cls.gateway = cls.system.start_gateway("--oauth=true", "--oauth-scope=imap",
                                                   "--allow-plaintext-auth=true")
            cls.plain_gateway = cls.system.start_gateway()
            cls.user, _ = cls.system.new_user("oauth")
            cls.other, _ = cls.system.new_user("oauth")
        except Exception:
            cls.system.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.system.stop()

    def tearDown(self):
        for gateway in (self.gateway, self.plain_gateway):
            self.assertTrue(gateway.alive(), "gateway died:\n" + gateway.log()[-3000:])

    def imap(self, gateway=None, system=None):
        context = ssl.create_default_context(cafile=(system or self.system).cert)
        client = imaplib.IMAP4_SSL("127.0.0.1", (gateway or self.gateway).imaps_port,
                                   ssl_context=context, timeout=15)
        self.addCleanup(client.shutdown)
        return client

    @staticmethod
    def oauthbearer(token, authzid=""):
        # RFC 7628 §3.1: GS2 header, then kvpairs; a single %x01 answers an error
        # challenge (§3.2.3).
        challenges = []

        def respond(challenge):
            challenges.append(challenge)
            if challenge:
                return b"\x01"
            return ("n,%s,\x01auth=Bearer %s\x01\x01"
                    % ("a=" + authzid if authzid else "", token)).encode()
        return respond, challenges

    @staticmethod
    def xoauth2(user, token):
        challenges = []

        def respond(challenge):
            challenges.append(challenge)
            if challenge:
                return b"\x01"
            return ("user=%s\x01auth=Bearer %s\x01\x01" % (user, token)).encode()
        return respond, challenges

    def test_advertised_over_tls_only_and_only_with_oauth(self):
        client = self.imap()
        self.assertIn("AUTH=OAUTHBEARER", client.capabilities)
        self.assertIn("AUTH=XOAUTH2", client.capabilities)
        plain = imaplib.IMAP4("127.0.0.1", self.gateway.imap_port, timeout=15)
        self.addCleanup(plain.shutdown)
        self.assertIn("AUTH=PLAIN", plain.capabilities)  # --allow-plaintext-auth
        self.assertNotIn("AUTH=OAUTHBEARER", plain.capabilities)
        self.assertNotIn("AUTH=XOAUTH2", plain.capabilities)
        typ, data = plain._simple_command("AUTHENTICATE", "OAUTHBEARER")
        self.assertEqual(typ, "NO")
        self.assertIn(b"[PRIVACYREQUIRED]", data[0])
        without = self.imap(self.plain_gateway)
        self.assertNotIn("AUTH=OAUTHBEARER", without.capabilities)
        self.assertNotIn("AUTH=XOAUTH2", without.capabilities)

    def test_gateway_with_oauth_before_a_service_without(self):
        # The module's service checks no tokens: a gateway told otherwise answers
        # NO [CANNOT] (the operator's mistake), without the error exchange.
        gateway = SYSTEM.start_gateway("--oauth=true")
        client = self.imap(gateway, SYSTEM)
        respond, challenges = self.oauthbearer(self.issuer.token(self.user))
        with self.assertRaises(imaplib.IMAP4.error) as refused:
            client.authenticate("OAUTHBEARER", respond)
        self.assertIn("[CANNOT]", str(refused.exception))
        self.assertEqual(challenges, [b""])

    def test_oauthbearer_logs_in(self):
        client = self.imap()
        respond, challenges = self.oauthbearer(self.issuer.token(self.user))
        typ, data = client.authenticate("OAUTHBEARER", respond)
        self.assertEqual(typ, "OK", data)
        self.assertEqual(challenges, [b""])
        self.assertEqual(client.select("INBOX")[0], "OK")
        # With the authorization identity in the GS2 header, equal to the token's user.
        client = self.imap()
        respond, _ = self.oauthbearer(self.issuer.token(self.user), authzid=self.user)
        self.assertEqual(client.authenticate("OAUTHBEARER", respond)[0], "OK")

    def test_xoauth2_logs_in(self):
        client = self.imap()
        respond, challenges = self.xoauth2(self.user, self.issuer.token(self.user))
        typ, data = client.authenticate("XOAUTH2", respond)
        self.assertEqual(typ, "OK", data)
        self.assertEqual(challenges, [b""])
        self.assertEqual(client.select("INBOX")[0], "OK")

    def assertRefusedWithErrorChallenge(self, client, mechanism, respond, challenges, status):
        with self.assertRaises(imaplib.IMAP4.error) as refused:
            client.authenticate(mechanism, respond)
        self.assertIn("[AUTHENTICATIONFAILED]", str(refused.exception))
        # RFC 7628 §3.2.2: the error came as a challenge, which the client answered
        # with %x01 before the NO.
        self.assertEqual(len(challenges), 2, challenges)
        error = json.loads(challenges[1])
        self.assertEqual(error, {"status": status, "schemes": "bearer", "scope": "imap"})
        # The connection goes on: a good token works on it.
        good, _ = self.oauthbearer(self.issuer.token(self.user))
        self.assertEqual(client.authenticate("OAUTHBEARER", good)[0], "OK")

    def test_expired_token_gets_the_error_exchange(self):
        expired = self.issuer.token(self.user, lifetime=-3600)
        respond, challenges = self.oauthbearer(expired)
        self.assertRefusedWithErrorChallenge(self.imap(), "OAUTHBEARER", respond, challenges,
                                             "invalid_token")
        respond, challenges = self.xoauth2(self.user, expired)
        self.assertRefusedWithErrorChallenge(self.imap(), "XOAUTH2", respond, challenges, "401")

    def test_token_of_another_user_is_refused(self):
        token = self.issuer.token(self.other)
        respond, challenges = self.oauthbearer(token, authzid=self.user)
        self.assertRefusedWithErrorChallenge(self.imap(), "OAUTHBEARER", respond, challenges,
                                             "invalid_token")
        respond, challenges = self.xoauth2(self.user, token)
        self.assertRefusedWithErrorChallenge(self.imap(), "XOAUTH2", respond, challenges, "401")
        # A token for a user the service does not have: no account is made.
        respond, challenges = self.oauthbearer(self.issuer.token("nobody@example.org"))
        self.assertRefusedWithErrorChallenge(self.imap(), "OAUTHBEARER", respond, challenges,
                                             "invalid_token")
        self.assertNotIn("nobody@example.org", self.system.admin("user", "list"))

    def test_sasl_ir_and_malformed_responses(self):
        client = RawClient(self.gateway.imaps_port, "tls", cafile=self.system.cert)
        self.addCleanup(client.close)
        # RFC 4959: the response on the command line.
        initial = base64.b64encode(("n,,\x01auth=Bearer %s\x01\x01"
                                    % self.issuer.token(self.user)).encode())
        _, tagged = client.command(b"AUTHENTICATE OAUTHBEARER " + initial, tag="i1")
        self.assertTrue(tagged.startswith(b"i1 OK [CAPABILITY "), tagged)
        client = RawClient(self.gateway.imaps_port, "tls", cafile=self.system.cert)
        self.addCleanup(client.close)
        for tag, response in (("b1", b"n,,auth=Bearer x\x01\x01"),
                              ("b2", b"p=tls-unique,,\x01auth=Bearer x\x01\x01"),
                              ("b3", b"n,,\x01host=x\x01\x01")):
            _, tagged = client.command(b"AUTHENTICATE OAUTHBEARER " + base64.b64encode(response),
                                       tag=tag)
            self.assertTrue(tagged.startswith(tag.encode() + b" BAD OAUTHBEARER: "), tagged)
        # The error exchange by hand: the challenge, %x01, then the NO.
        expired = base64.b64encode(("n,,\x01auth=Bearer %s\x01\x01"
                                    % self.issuer.token(self.user, lifetime=-600)).encode())
        client.send(b"e1 AUTHENTICATE OAUTHBEARER " + expired + b"\r\n")
        line = client.read_line()
        self.assertTrue(line.startswith(b"+ "), line)
        self.assertEqual(json.loads(base64.b64decode(line[2:]))["status"], "invalid_token")
        client.send(base64.b64encode(b"\x01") + b"\r\n")
        _, tagged = client.read_tagged("e1")
        self.assertTrue(tagged.startswith(b"e1 NO [AUTHENTICATIONFAILED]"), tagged)


class IntrospectionEndpoint:
    """A small RFC 7662 introspection endpoint over HTTPS (the harness's certificate)
    for the service to ask about opaque tokens: answers from `answers` (token ->
    dict), requires the service's client credentials, counts the requests."""

    CLIENT = ("imap-service", "s3cret:+/")

    def __init__(self, cert, key):
        import http.server
        import threading
        import urllib.parse
        endpoint = self
        self.answers = {}
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                endpoint.requests += 1
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                form = urllib.parse.parse_qs(body)
                expected = "Basic " + base64.b64encode(
                    ("%s:%s" % tuple(urllib.parse.quote_plus(part)
                                     for part in endpoint.CLIENT)).encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                answer = endpoint.answers.get(form["token"][0], {"active": False})
                if answer == "slow":
                    time.sleep(3)
                    answer = {"active": False}
                data = json.dumps(answer).encode() if isinstance(answer, dict) else answer
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (OSError, ssl.SSLError):
                    pass  # the service gave up on a slow or oversized answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = "https://127.0.0.1:%d/introspect" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class OAuthIntrospectionTest(unittest.TestCase):
    # RFC 7662: opaque tokens are sent to the identity provider's introspection
    # endpoint (a local HTTPS one here); JWTs are still checked offline.
    @classmethod
    def setUpClass(cls):
        cls.system = harness.System("std-introspection")
        cls.endpoint = IntrospectionEndpoint(cls.system.cert, cls.system.key)
        try:
            secret = os.path.join(cls.system.dir, "introspection.secret")
            with open(secret, "w") as f:
                f.write(IntrospectionEndpoint.CLIENT[1] + "\n")
            os.chmod(secret, 0o600)
            cls.issuer = harness.OAuthIssuer(cls.system.dir)
            cls.system.start_service(
                *cls.issuer.service_flags(),
                "--oauth-introspection-url=" + cls.endpoint.url,
                "--oauth-introspection-client-id=" + IntrospectionEndpoint.CLIENT[0],
                "--oauth-introspection-secret-file=" + secret,
                "--oauth-introspection-ca-file=" + cls.system.cert,
                "--oauth-introspection-timeout=1s",
                "--oauth-introspection-max-response-bytes=4096")
            cls.gateway = cls.system.start_gateway("--oauth=true")
            cls.user, _ = cls.system.new_user("intro")
        except Exception:
            cls.system.stop()
            cls.endpoint.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.system.stop()
        cls.endpoint.stop()

    def authenticate(self, token):
        """imaplib's AUTHENTICATE OAUTHBEARER with `token`: (result or the error's
        text, the challenges the client saw)."""
        context = ssl.create_default_context(cafile=self.system.cert)
        client = imaplib.IMAP4_SSL("127.0.0.1", self.gateway.imaps_port, ssl_context=context,
                                   timeout=15)
        self.addCleanup(client.shutdown)
        respond, challenges = OAuthBearerTest.oauthbearer(token)
        try:
            return client.authenticate("OAUTHBEARER", respond)[0], challenges
        except imaplib.IMAP4.error as e:
            return str(e), challenges

    def test_opaque_token_is_introspected_once_then_cached(self):
        now = int(time.time())
        self.endpoint.answers["opaque-good"] = {
            "active": True, "email": self.user, "exp": now + 600,
            "iss": harness.OAuthIssuer.ISSUER, "aud": harness.OAuthIssuer.AUDIENCE}
        before = self.endpoint.requests
        self.assertEqual(self.authenticate("opaque-good")[0], "OK")
        self.assertEqual(self.authenticate("opaque-good")[0], "OK")
        self.assertEqual(self.endpoint.requests, before + 1)
        # A JWT is checked with the key set, without asking the endpoint.
        self.assertEqual(self.authenticate(self.issuer.token(self.user))[0], "OK")
        self.assertEqual(self.endpoint.requests, before + 1)

    def test_inactive_or_mismatching_answers_fail_with_the_error_exchange(self):
        now = int(time.time())
        self.endpoint.answers["opaque-other-audience"] = {
            "active": True, "email": self.user, "exp": now + 600, "aud": "somewhere-else"}
        for token in ("opaque-revoked", "opaque-other-audience"):
            result, challenges = self.authenticate(token)
            self.assertIn("[AUTHENTICATIONFAILED]", result)
            self.assertEqual(len(challenges), 2, challenges)
            self.assertEqual(json.loads(challenges[1])["status"], "invalid_token")

    def test_an_endpoint_that_cannot_answer_is_unavailable_not_a_failure(self):
        # Too slow (past --oauth-introspection-timeout), or an answer over
        # --oauth-introspection-max-response-bytes.
        self.endpoint.answers["opaque-slow"] = "slow"
        self.endpoint.answers["opaque-huge"] = json.dumps(
            {"active": True, "email": self.user, "pad": "x" * 5000}).encode()
        for token in ("opaque-slow", "opaque-huge"):
            result, challenges = self.authenticate(token)
            self.assertIn("[UNAVAILABLE]", result)
            self.assertEqual(challenges, [b""])
        self.assertTrue(self.gateway.alive())


class DefaultMailboxesTest(unittest.TestCase):
    # RFC 6154: a new user has the special-use mailboxes clients look for, made
    # and subscribed by the mailbox service (--default-mailboxes, on by default).
    def test_new_users_get_the_special_use_mailboxes(self):
        system = harness.System("std-defaults")
        try:
            system.start_service(default_mailboxes=None)  # the service's default
            gateway = system.start_gateway()
            user, password = system.new_user("fresh")
            client = RawClient(gateway.imaps_port, "tls", cafile=system.cert)
            client.login(user, password)
            self.assertEqual(client.ok('LIST "" *'), [
                b'* LIST (\\HasNoChildren) "/" INBOX',
                b'* LIST (\\HasNoChildren \\Archive) "/" Archive',
                b'* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
                b'* LIST (\\HasNoChildren \\Junk) "/" Junk',
                b'* LIST (\\HasNoChildren \\Sent) "/" Sent',
                b'* LIST (\\HasNoChildren \\Trash) "/" Trash'])
            self.assertEqual(len(client.ok('LSUB "" *')), 5)
            lines = client.ok('LIST (SPECIAL-USE) "" *')
            self.assertEqual(len(lines), 5, lines)
            client.close()
            # A bad list stops the service at start, with a message.
            system.stop_service()
            with self.assertRaises(Exception):
                system.start_service(default_mailboxes="Sent:\\Bogus")
            self.assertIn("--default-mailboxes", open(os.path.join(system.dir, "service.log")).read())
        finally:
            system.stop()


class CondstoreTest(Base):
    def test_the_first_enabling_command_while_selected_reports_highestmodseq(self):
        # RFC 7162 §3.1: a CONDSTORE-enabling command issued while a mailbox is
        # selected produces "* OK [HIGHESTMODSEQ n]" for it, once.
        writer = self.connect()
        append_raw(writer, "INBOX", MESSAGE)
        client = self.connect()
        selected = client.ok("SELECT INBOX")
        highest = next(int(re.search(rb"HIGHESTMODSEQ (\d+)", line).group(1))
                       for line in selected if b"HIGHESTMODSEQ" in line)
        untagged = client.ok("FETCH 1 (MODSEQ)")
        self.assertEqual(untagged[0], b"* OK [HIGHESTMODSEQ %d] Highest" % highest)
        self.assertTrue(untagged[1].startswith(b"* 1 FETCH (MODSEQ ("), untagged)
        self.assertEqual(len(client.ok("FETCH 1 (MODSEQ)")), 1)  # not again

    def test_esearch_min_and_max_carry_the_modseq_of_the_messages_returned(self):
        # RFC 7162 §3.1.10 with RFC 4731: the MODSEQ of an ESEARCH result is the
        # highest of the messages returned; for MIN or MAX alone, of that message.
        client = self.connect()
        for _ in range(3):
            append_raw(client, "INBOX", MESSAGE)
        client.ok("SELECT INBOX")
        client.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
        client.ok("STORE 1 +FLAGS.SILENT (\\Seen)")

        def modseq_of(seq):
            line = client.ok("FETCH %d (MODSEQ)" % seq)[-1]
            return int(re.search(rb"MODSEQ \((\d+)\)", line).group(1))

        m1, m2, m3 = modseq_of(1), modseq_of(2), modseq_of(3)
        self.assertGreater(m1, m2)
        self.assertGreater(m2, m3)

        def esearch(returns):
            lines = client.ok("SEARCH RETURN (%s) MODSEQ 1" % returns)
            return lines[0]

        self.assertIn(b"MIN 1 MODSEQ %d" % m1, esearch("MIN"))
        self.assertIn(b"MAX 3 MODSEQ %d" % m3, esearch("MAX"))
        self.assertIn(b"MIN 1 MAX 3 MODSEQ %d" % m1, esearch("MIN MAX"))
        self.assertIn(b"COUNT 3 MODSEQ %d" % m1, esearch("COUNT"))
        self.assertIn(b"ALL 1:3 MODSEQ %d" % m1, esearch("ALL"))
        # Only messages changed after m3: MAX is now 2, with its own MODSEQ.
        lines = client.ok("SEARCH RETURN (MAX) MODSEQ %d" % (m3 + 1))
        self.assertIn(b"MAX 2 MODSEQ %d" % m2, lines[0])



# --- RFC 5258 LIST-EXTENDED ----------------------------------------------------------
class ListExtendedTest(Base):
    def test_childinfo_only_for_children_not_returned_themselves(self):
        # RFC 5258 §3.5: with RECURSIVEMATCH, a parent that does not meet the
        # selection is returned with CHILDINFO ("SUBSCRIBED") for a subscribed
        # child the response does not show; when another pattern of the same
        # command returns that child, the parent has nothing to report.
        client = self.connect()
        for name in ("Fruit", "Fruit/Banana", "Tofu", "Vegetable", "Vegetable/Broccoli"):
            client.ok("CREATE " + name)
        for name in ("Fruit/Banana", "Tofu", "Vegetable/Broccoli"):
            client.ok("SUBSCRIBE " + name)

        def listed(command):
            entries = {}
            for line in client.ok(command):
                match = re.match(rb'\* LIST \(([^)]*)\) "/" (\S+)(.*)', line)
                self.assertIsNotNone(match, line)
                entries[match.group(2).decode()] = match.group(3)
            return entries

        one = listed('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
        self.assertEqual(sorted(one), ["Fruit", "Tofu", "Vegetable"])
        self.assertIn(b'("CHILDINFO" ("SUBSCRIBED"))', one["Fruit"])
        self.assertIn(b'("CHILDINFO" ("SUBSCRIBED"))', one["Vegetable"])
        self.assertNotIn(b"CHILDINFO", one["Tofu"])

        both = listed('LIST (SUBSCRIBED RECURSIVEMATCH) "" ("%" "%/%")')
        self.assertEqual(sorted(both), ["Fruit/Banana", "Tofu", "Vegetable/Broccoli"])
        self.assertFalse(any(b"CHILDINFO" in rest for rest in both.values()), both)

        # A parent keeps CHILDINFO for a child that no pattern returns.
        client.ok("CREATE Fruit/Dried/Fig")
        client.ok("SUBSCRIBE Fruit/Dried/Fig")
        mixed = listed('LIST (SUBSCRIBED RECURSIVEMATCH) "" ("%" "%/%")')
        self.assertIn(b'("CHILDINFO" ("SUBSCRIBED"))', mixed["Fruit/Dried"])
        self.assertIn(b'("CHILDINFO" ("SUBSCRIBED"))', mixed["Fruit"])
        self.assertNotIn(b"CHILDINFO", mixed["Fruit/Banana"])



# --- RFC 5322 addresses in SEARCH and ENVELOPE -------------------------------------
class AddressSyntaxTest(Base):
    def test_address_search_sees_through_comments_in_addr_specs(self):
        # RFC 5322 §3.2.2 / §4.4: comments (CFWS) may sit between the tokens of an
        # addr-spec. SEARCH FROM matches the address as meant; ENVELOPE gives
        # mailbox and host without the comments.
        message = (b"From: <user-from (comment)@ (comment) domain.org>\r\n"
                   b"To: Someone <someone@example.org>\r\n"
                   b"Subject: obsolete syntax\r\n\r\nBody.\r\n")
        client = self.connect()
        append_raw(client, "INBOX", message)
        append_raw(client, "INBOX", MESSAGE)
        client.ok("SELECT INBOX")
        self.assertEqual(client.ok("SEARCH FROM user-from@domain.org"), [b"* SEARCH 1"])
        self.assertEqual(client.ok("SEARCH FROM DOMAIN.ORG"), [b"* SEARCH 1"])
        self.assertEqual(client.ok("SEARCH FROM comment"), [b"* SEARCH 1"])  # as written
        self.assertEqual(client.ok("SEARCH TO someone@example.org"), [b"* SEARCH 1"])
        envelope = client.ok("FETCH 1 (ENVELOPE)")[0]
        self.assertIn(b' NIL "user-from" "domain.org"))', envelope)



# --- RFC 6154 CREATE-SPECIAL-USE ------------------------------------------------------
class CreateSpecialUseTest(Base):
    def test_create_with_use_marks_the_mailbox(self):
        client = self.connect(login=False)
        client.login(self.user, self.password)
        self.assertIn(b"CREATE-SPECIAL-USE", client.ok("CAPABILITY")[0])
        client.ok("CREATE Outbox/Sent (USE (\\Sent))")
        client.ok('CREATE "Old Mail" (USE (\\Archive \\Flagged))')
        self.assertEqual(client.ok('LIST "" "Outbox/Sent"'),
                         [b'* LIST (\\HasNoChildren \\Sent) "/" Outbox/Sent'])
        lines = client.ok('LIST (SPECIAL-USE) "" *')
        self.assertEqual(sorted(lines), [
            b'* LIST (\\HasNoChildren \\Archive \\Flagged) "/" "Old Mail"',
            b'* LIST (\\HasNoChildren \\Sent) "/" Outbox/Sent'])
        # RFC 6154 §3: a use the server cannot give is NO [USEATTR], and nothing is
        # created; a parameter other than USE is a syntax error.
        _, tagged = client.command("CREATE Bogus (USE (\\Bogus))", tag="u1")
        self.assertTagged(tagged, "u1", "NO", b"USEATTR")
        self.assertEqual(client.ok('LIST "" Bogus'), [])
        _, tagged = client.command("CREATE Other (COLOR (red))", tag="u2")
        self.assertTagged(tagged, "u2", "BAD")
        self.assertIn(b"unknown CREATE parameter COLOR", tagged)


if __name__ == "__main__":
    unittest.main()


class Imap4rev2Test(Base):
    # RFC 9051 §7.2.2: both revisions are offered; RFC 3501 rules hold until the
    # client sends ENABLE IMAP4rev2 (Appendix E, docs/standards-support.md).
    def rev2(self, select=None):
        client = self.connect()
        self.assertEqual(client.ok("ENABLE IMAP4rev2"), [b"* ENABLED IMAP4rev2"])
        if select:
            client.ok("SELECT " + select)
        return client

    def test_both_revisions_are_advertised_and_enable_lists_it_once(self):
        client = self.connect()
        caps = client.ok("CAPABILITY")[0].split()
        self.assertIn(b"IMAP4rev1", caps)
        self.assertIn(b"IMAP4rev2", caps)
        self.assertEqual(client.ok("ENABLE imap4REV2"), [b"* ENABLED IMAP4rev2"])
        self.assertEqual(client.ok("ENABLE IMAP4rev2"), [b"* ENABLED"])
        # The capability list does not change with ENABLE (RFC 5161 §3.1).
        self.assertEqual(client.ok("CAPABILITY")[0].split(), caps)

    def test_select_sends_list_and_no_recent_or_unseen(self):
        writer = self.connect()
        writer.ok("CREATE Outbox (USE (\\Sent))")
        for _ in range(2):
            append_raw(writer, "Outbox", MESSAGE)
        client = self.rev2()
        lines = client.ok("SELECT Outbox")
        self.assertIn(b"* 2 EXISTS", lines)
        listed = [line for line in lines if line.startswith(b"* LIST ")]
        self.assertEqual(len(listed), 1, lines)
        self.assertRegex(listed[0], rb'^\* LIST \([^)]*\\Sent[^)]*\) "/" Outbox$')
        self.assertFalse([line for line in lines if b"RECENT" in line or b"UNSEEN" in line],
                         lines)
        self.assertEqual(client.ok("FETCH 1:2 (FLAGS)"),
                         [b"* 1 FETCH (FLAGS ())", b"* 2 FETCH (FLAGS ())"])
        # The IMAP4rev2 session took no \Recent: an RFC 3501 session still gets it.
        old = self.connect()
        self.assertIn(b"* 2 RECENT", old.ok("SELECT Outbox"))

    def test_arrivals_are_announced_without_recent(self):
        client = self.rev2(select="INBOX")
        writer = self.connect()
        append_raw(writer, "INBOX", MESSAGE)
        lines = poll_until(client, "NOOP", lambda line: line == b"* 1 EXISTS")
        self.assertFalse([line for line in lines if line.endswith(b"RECENT")], lines)
        self.assertEqual(client.ok("FETCH 1 (FLAGS)"), [b"* 1 FETCH (FLAGS ())"])
        # Nobody was told of it with \Recent, so STATUS still counts it.
        self.assertEqual(writer.ok("STATUS INBOX (RECENT)"), [b"* STATUS INBOX (RECENT 1)"])

    def test_search_is_answered_with_esearch(self):
        writer = self.connect()
        for _ in range(3):
            append_raw(writer, "INBOX", MESSAGE)
        client = self.rev2(select="INBOX")
        client.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
        tag = client.tag()
        untagged, tagged = client.command("SEARCH UNSEEN", tag=tag)
        self.assertEqual(untagged, [b'* ESEARCH (TAG "%s") ALL 1,3' % tag.encode()])
        tag = client.tag()
        untagged, tagged = client.command("UID SEARCH DELETED", tag=tag)
        self.assertEqual(untagged, [b'* ESEARCH (TAG "%s") UID' % tag.encode()])
        tag = client.tag()
        untagged, tagged = client.command("SEARCH RETURN (COUNT) ALL", tag=tag)
        self.assertEqual(untagged, [b'* ESEARCH (TAG "%s") COUNT 3' % tag.encode()])
        # An RFC 3501 session keeps "* SEARCH".
        old = self.connect(select="INBOX")
        self.assertEqual(old.ok("SEARCH UNSEEN"), [b"* SEARCH 1 3"])

    def test_mailbox_names_are_utf8(self):
        client = self.rev2()
        client.ok('CREATE "Entwürfe"'.encode("utf-8"))
        client.ok('CREATE "R&D"')
        names = b"\n".join(client.ok('LIST "" *'))
        self.assertIn("Entwürfe".encode("utf-8"), names)
        self.assertIn(b'"/" R&D', names)
        # An RFC 3501 session sees the same mailboxes in modified UTF-7.
        old = self.connect()
        names = b"\n".join(old.ok('LIST "" *'))
        self.assertIn(b"Entw&APw-rfe", names)
        self.assertIn(b"R&-D", names)


class Utf8AcceptTest(Base):
    # RFC 6855.
    def test_enable_utf8_names_and_utf8_append(self):
        client = self.connect()
        self.assertIn(b"UTF8=ACCEPT", client.ok("CAPABILITY")[0].split())
        self.assertEqual(client.ok("ENABLE UTF8=ACCEPT"), [b"* ENABLED UTF8=ACCEPT"])
        name = "Grüße".encode("utf-8")
        client.send(b"c1 CREATE \"" + name + b"\"\r\n")
        _, tagged = client.read_tagged("c1")
        self.assertTagged(tagged, "c1", "OK")
        self.assertIn(name, b"\n".join(client.ok('LIST "" *')))
        # §4: a message with a UTF-8 header, sent as UTF8 (~{n}).
        message = ("From: Jörg <jorg@example.org>\r\nSubject: Grüße aus Köln\r\n\r\n"
                   "Hallo\r\n").encode("utf-8")
        client.send(b"a1 APPEND \"" + name + b"\" UTF8 (~{%d+}\r\n" % len(message) + message
                    + b")\r\n")
        _, tagged = client.read_tagged("a1")
        self.assertTagged(tagged, "a1", "OK", b"APPENDUID")
        client.send(b"s1 SELECT \"" + name + b"\"\r\n")
        _, tagged = client.read_tagged("s1")
        self.assertTagged(tagged, "s1", "OK")
        client.send(b"f1 FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
        lines, tagged = client.read_tagged("f1")
        self.assertTagged(tagged, "f1", "OK")
        self.assertIn("Grüße aus Köln".encode("utf-8"), lines[0])
        # Search strings are UTF-8 without a CHARSET.
        client.send("t1 SEARCH SUBJECT \"Köln\"\r\n".encode("utf-8"))
        lines, tagged = client.read_tagged("t1")
        self.assertEqual(lines, [b"* SEARCH 1"])
        # An RFC 3501 session names the mailbox in modified UTF-7.
        old = self.connect()
        self.assertEqual(old.ok("STATUS Gr&APwA3w-e (MESSAGES)"),
                         [b"* STATUS Gr&APwA3w-e (MESSAGES 1)"])

    def test_bad_utf8_data(self):
        client = self.connect()
        client.ok("ENABLE UTF8=ACCEPT")
        # Octets that are not UTF-8 in a mailbox name are a syntax error (§3).
        client.send(b"b1 SELECT \"Gr\xfc\xdfe\"\r\n")
        _, tagged = client.read_tagged("b1")
        self.assertTagged(tagged, "b1", "BAD")
        # UTF8 takes a literal8 and is closed by ")".
        _, tagged = client.command("APPEND INBOX UTF8 ({2+}\r\nhi)", tag="b2")
        self.assertTagged(tagged, "b2", "BAD")
        _, tagged = client.command("APPEND INBOX UTF8 (~{2+}\r\nhi", tag="b3")
        self.assertTagged(tagged, "b3", "BAD")
        self.assertEqual(client.ok("STATUS INBOX (MESSAGES)"), [b"* STATUS INBOX (MESSAGES 0)"])
        # ENABLE belongs before SELECT (RFC 6855 §3).
        client.ok("SELECT INBOX")
        _, tagged = client.command("ENABLE UTF8=ACCEPT", tag="b4")
        self.assertTagged(tagged, "b4", "BAD")


def sized_message(octets, serial):
    """A message of exactly `octets` octets."""
    head = b"Subject: sized %d\r\n\r\n" % serial
    return head + b"x" * (octets - len(head))


class QuotaTest(Base):
    """RFC 9208: one quota root ("") per user, limits set with mailbox-admin, writes
    past a limit refused whole with NO [OVERQUOTA]."""

    def append_tagged(self, client, mailbox, message, flags=b""):
        tag = client.tag()
        client.send(b"%s APPEND %s %s{%d+}\r\n%s\r\n"
                    % (tag.encode(), mailbox.encode(), flags, len(message), message))
        return tag, client.read_tagged(tag)[1]

    def test_capabilities_and_an_account_without_a_quota(self):
        client = self.connect()
        caps = client.ok("CAPABILITY")[0].split()
        for cap in (b"QUOTA", b"QUOTA=RES-STORAGE", b"QUOTA=RES-MESSAGE"):
            self.assertIn(cap, caps)
        self.assertNotIn(b"QUOTASET", caps)
        self.assertEqual(client.ok("GETQUOTAROOT INBOX"), [b"* QUOTAROOT INBOX"])
        _, tagged = self.command(client, 'GETQUOTA ""', "q1")
        self.assertTagged(tagged, "q1", "NO", b"NONEXISTENT")

    def test_limits_set_by_the_administrator_are_reported(self):
        SYSTEM.admin("quota", "set", self.user, "--storage=10", "--messages=5")
        client = self.connect()
        self.assertEqual(client.ok("GETQUOTAROOT inbox"),
                         [b'* QUOTAROOT INBOX ""', b'* QUOTA "" (STORAGE 0 10 MESSAGE 0 5)'])
        append_raw(client, "INBOX", sized_message(1500, 1))
        self.assertEqual(client.ok('GETQUOTA ""'), [b'* QUOTA "" (STORAGE 2 10 MESSAGE 1 5)'])
        self.assertEqual(SYSTEM.admin("quota", "get", self.user),
                         "RESOURCE\tUSAGE\tLIMIT\nSTORAGE\t2\t10\nMESSAGE\t1\t5\n")
        _, tagged = self.command(client, 'SETQUOTA "" (STORAGE 100)', "q2")
        self.assertTagged(tagged, "q2", "NO", b"NOPERM")
        _, tagged = self.command(client, "GETQUOTAROOT Missing", "q3")
        self.assertTagged(tagged, "q3", "NO", b"NONEXISTENT")
        _, tagged = self.command(client, "GETQUOTA user.other", "q4")
        self.assertTagged(tagged, "q4", "NO", b"NONEXISTENT")
        _, tagged = self.command(client, "GETQUOTA", "q5")
        self.assertTagged(tagged, "q5", "BAD")
        # Only the limited resources are listed; no limit at all, no root.
        SYSTEM.admin("quota", "set", self.user, "--messages=7")
        self.assertEqual(client.ok('GETQUOTA ""'), [b'* QUOTA "" (MESSAGE 1 7)'])
        SYSTEM.admin("quota", "set", self.user)
        self.assertEqual(client.ok("GETQUOTAROOT INBOX"), [b"* QUOTAROOT INBOX"])

    def test_writes_past_a_limit_store_nothing(self):
        SYSTEM.admin("quota", "set", self.user, "--storage=2", "--messages=3")
        client = self.connect()
        client.ok("CREATE Archive")
        append_raw(client, "INBOX", sized_message(1500, 1))
        tag, tagged = self.append_tagged(client, "INBOX", sized_message(1500, 2))
        self.assertTagged(tagged, tag, "NO", b"OVERQUOTA")
        self.assertEqual(client.ok("STATUS INBOX (MESSAGES UIDNEXT)"),
                         [b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2)"])
        client.ok("SELECT INBOX")
        _, tagged = self.command(client, "COPY 1 Archive", "c1")
        self.assertTagged(tagged, "c1", "NO", b"OVERQUOTA")
        # A move adds nothing to the account: allowed even at the limit.
        client.ok("MOVE 1 Archive")
        self.assertEqual(client.ok("STATUS Archive (MESSAGES)"),
                         [b"* STATUS Archive (MESSAGES 1)"])
        # MULTIAPPEND past the MESSAGE limit: refused whole.
        SYSTEM.admin("quota", "set", self.user, "--messages=2")
        tag = client.tag()
        one, two = sized_message(100, 3), sized_message(100, 4)
        client.send(b"%s APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n"
                    % (tag.encode(), len(one), one, len(two), two))
        _, tagged = client.read_tagged(tag)
        self.assertTagged(tagged, tag, "NO", b"OVERQUOTA")
        self.assertEqual(client.ok("STATUS INBOX (MESSAGES)"), [b"* STATUS INBOX (MESSAGES 0)"])

    def test_parallel_appends_racing_for_the_last_bytes(self):
        # Room for exactly 8 messages of 1 KiB; six connections try 3 each at once.
        SYSTEM.admin("quota", "set", self.user, "--storage=8")
        clients = [self.connect() for _ in range(6)]
        results = []
        lock = threading.Lock()

        def run(index, client):
            for i in range(3):
                tag, tagged = self.append_tagged(client, "INBOX",
                                                 sized_message(1024, index * 10 + i))
                with lock:
                    results.append((tag, tagged))

        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        self.assertEqual(len(results), 18)
        stored = [t for tag, t in results if t.startswith(tag.encode() + b" OK")]
        refused = [t for tag, t in results if t.startswith(tag.encode() + b" NO [OVERQUOTA]")]
        self.assertEqual((len(stored), len(refused)), (8, 10), results)
        client = self.connect()
        self.assertEqual(client.ok("STATUS INBOX (MESSAGES SIZE)"),
                         [b"* STATUS INBOX (MESSAGES 8 SIZE 8192)"])
        self.assertEqual(client.ok('GETQUOTA ""'), [b'* QUOTA "" (STORAGE 8 8)'])

    def test_status_deleted_storage(self):
        client = self.connect()
        append_raw(client, "INBOX", sized_message(3000, 1), flags=b"(\\Deleted) ")
        append_raw(client, "INBOX", sized_message(2000, 2))
        append_raw(client, "INBOX", sized_message(100, 3), flags=b"(\\Deleted) ")
        # RFC 9208 §4.2: in units of 1024 octets (3100 octets: 4).
        self.assertEqual(client.ok("STATUS INBOX (DELETED DELETED-STORAGE)"),
                         [b"* STATUS INBOX (DELETED 2 DELETED-STORAGE 4)"])


class MetadataTest(Base):
    """RFC 5464: server and mailbox annotations, kept by the mailbox service."""

    def test_set_get_depth_maxsize_and_remove(self):
        client = self.connect()
        self.assertIn(b"METADATA", client.ok("CAPABILITY")[0].split())
        client.ok("CREATE Projects")
        # A literal value across lines, as in §4.3's example.
        tag = client.tag()
        value = b"My new comment across\r\ntwo lines."
        client.send(b"%s SETMETADATA Projects (/private/comment {%d}\r\n"
                    % (tag.encode(), len(value)))
        client.expect_continuation()
        client.send(value + b" /shared/comment \"shared one\")\r\n")
        _, tagged = client.read_tagged(tag)
        self.assertTrue(tagged.startswith(tag.encode() + b" OK"), tagged)
        lines = client.ok("GETMETADATA Projects (/shared/comment /PRIVATE/Comment /private/x)")
        self.assertEqual(b"".join(lines),
                         b'* METADATA Projects (/private/comment {%d}\r\n%s'
                         b' /shared/comment "shared one")' % (len(value), value))
        client.ok('SETMETADATA Projects (/private/filters/values/small "SMALLER 5000" '
                  '/private/filters/values/boss "FROM boss" /private/filters/values/a/b "deep")')
        self.assertEqual(client.ok("GETMETADATA (DEPTH 1) Projects /private/filters/values"),
                         [b'* METADATA Projects (/private/filters/values/boss "FROM boss" '
                          b'/private/filters/values/small "SMALLER 5000")'])
        lines = client.ok("GETMETADATA (DEPTH infinity) Projects /private/filters")
        self.assertIn(b"/private/filters/values/a/b", lines[0])
        # MAXSIZE leaves out longer values and says how long the longest was.
        untagged, tagged = self.command(
            client, "GETMETADATA (MAXSIZE 5) Projects (/private/comment /shared/comment)", "g1")
        self.assertEqual(untagged, [])
        self.assertTagged(tagged, "g1", "OK", b"METADATA LONGENTRIES %d" % len(value))
        client.ok("SETMETADATA Projects (/private/comment NIL)")
        self.assertEqual(client.ok("GETMETADATA Projects /private/comment"), [])
        # Server annotations: private ones are the user's, shared ones the operator's.
        client.ok('SETMETADATA "" (/private/vendor/example/theme "dark")')
        self.assertEqual(client.ok('GETMETADATA "" /private/vendor/example/theme'),
                         [b'* METADATA "" (/private/vendor/example/theme "dark")'])
        _, tagged = self.command(client, 'SETMETADATA "" (/shared/comment "hi all")', "s1")
        self.assertTagged(tagged, "s1", "NO", b"NOPERM")
        # Deleted with the mailbox (§4.1).
        client.ok("DELETE Projects")
        client.ok("CREATE Projects")
        self.assertEqual(client.ok("GETMETADATA Projects /shared/comment"), [])

    def test_errors(self):
        client = self.connect()
        cases = [
            ("GETMETADATA Nowhere /private/comment", "NO", b"NONEXISTENT"),
            ("GETMETADATA INBOX /public/comment", "BAD", None),
            ("GETMETADATA INBOX /private//x", "BAD", None),
            ("SETMETADATA INBOX (/private/a* \"x\")", "BAD", None),
            ("GETMETADATA (DEPTH 2) INBOX /private/comment", "BAD", None),
            ("SETMETADATA INBOX /private/comment \"x\"", "BAD", None),
        ]
        for i, (command, status, code) in enumerate(cases):
            _, tagged = self.command(client, command, "e%d" % i)
            self.assertTagged(tagged, "e%d" % i, status, code)
        # §4.3: the largest value accepted is named; nothing of the command is set.
        big = b"v" * (16 * 1024 + 1)
        tag = client.tag()
        client.send(b'%s SETMETADATA INBOX (/private/small "x" /private/big {%d+}\r\n%s)\r\n'
                    % (tag.encode(), len(big), big))
        _, tagged = client.read_tagged(tag)
        self.assertTagged(tagged, tag, "NO", b"METADATA MAXSIZE 16384")
        self.assertEqual(client.ok("GETMETADATA INBOX /private/small"), [])
        self.assertTrue(client.alive())


def sort_message(uid_hint, subject, date, sender, to, cc=b"", extra=b""):
    """A message for the SORT/THREAD tests (uid_hint only makes it distinct)."""
    return (b"From: %s\r\nTo: %s\r\n%sSubject: %s\r\n%sDate: %s\r\n"
            b"X-Hint: %d\r\n\r\nbody\r\n"
            % (sender, to, (b"Cc: " + cc + b"\r\n") if cc else b"", subject, extra, date,
               uid_hint))


class SortTest(Base):
    """RFC 5256 SORT and RFC 5957 SORT=DISPLAY, ordered by the mailbox service."""

    def fill(self, client):
        messages = [
            # subject, Date:, From, To, Cc; appended in this order (UIDs 1..5)
            (b"Re: [list] beta", b"Tue, 6 Jan 2026 10:00:00 +0000",
             b"Zed <zed@example.org>", b"amy@example.org", b"bob@example.org"),
            (b"=?utf-8?q?=C3=A4lpha?=", b"Mon, 5 Jan 2026 23:00:00 -0300",
             b"\"Anna\" <YVES@example.org>", b"Carl <carl@example.org>", b""),
            (b"Gamma", b"not a date", b"bea@example.org", b"dan@example.org",
             b"ann@example.org"),
            (b"Fwd: beta (fwd)", b"Mon, 5 Jan 2026 09:00:00 +0000",
             b"mia@example.org", b"Zoe <eve@example.org>", b""),
            (b"alpha", b"Wed, 7 Jan 2026 08:00:00 +0100",
             b"adam@example.org", b"fay@example.org", b""),
        ]
        for i, (subject, date, sender, to, cc) in enumerate(messages):
            append_raw(client, "INBOX", sort_message(i, subject, date, sender, to, cc))
        client.ok("SELECT INBOX")

    def sort(self, client, command):
        lines = client.ok(command)
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith(b"* SORT"), lines)
        return [int(n) for n in lines[0].split()[2:]]

    def test_capabilities(self):
        client = self.connect()
        caps = client.ok("CAPABILITY")[0].split()
        for cap in (b"SORT", b"SORT=DISPLAY", b"THREAD=ORDEREDSUBJECT", b"THREAD=REFERENCES"):
            self.assertIn(cap, caps)

    def test_every_key(self):
        client = self.connect()
        self.fill(client)
        # Base subjects: beta, älpha, gamma, beta, alpha (folded, compared as UTF-8
        # octets: "älpha" after the ASCII ones).
        self.assertEqual(self.sort(client, "UID SORT (SUBJECT) UTF-8 ALL"), [5, 1, 4, 3, 2])
        # Sent dates: 1 = 6 Jan 10:00Z, 2 = 6 Jan 02:00Z, 3 = none (its internal
        # date, the time of the APPEND: the latest), 4 = 5 Jan 09:00Z, 5 = 7 Jan 07:00Z.
        self.assertEqual(self.sort(client, "UID SORT (DATE) UTF-8 ALL"), [4, 2, 1, 5, 3])
        self.assertEqual(self.sort(client, "UID SORT (REVERSE DATE) UTF-8 ALL"), [3, 5, 1, 2, 4])
        self.assertEqual(self.sort(client, "UID SORT (ARRIVAL) US-ASCII ALL"), [1, 2, 3, 4, 5])
        self.assertEqual(self.sort(client, "UID SORT (FROM) UTF-8 ALL"), [5, 3, 4, 2, 1])
        self.assertEqual(self.sort(client, "UID SORT (TO) UTF-8 ALL"), [1, 2, 3, 4, 5])
        # No Cc sorts as the empty string, first; ties in mailbox order.
        self.assertEqual(self.sort(client, "UID SORT (CC) UTF-8 ALL"), [2, 4, 5, 3, 1])
        # RFC 5957: display name, else the address.
        self.assertEqual(self.sort(client, "UID SORT (DISPLAYFROM) UTF-8 ALL"), [5, 2, 3, 4, 1])
        self.assertEqual(self.sort(client, "UID SORT (DISPLAYTO) UTF-8 ALL"), [1, 2, 3, 5, 4])
        sizes = self.sort(client, "UID SORT (SIZE REVERSE ARRIVAL) UTF-8 ALL")
        self.assertEqual(sorted(sizes), [1, 2, 3, 4, 5])

    def test_search_criteria_sequence_numbers_and_ties(self):
        client = self.connect()
        self.fill(client)
        client.ok("UID STORE 2,4 +FLAGS (\\Seen)")
        self.assertEqual(self.sort(client, "UID SORT (SUBJECT) UTF-8 UNSEEN"), [5, 1, 3])
        self.assertEqual(self.sort(client, "UID SORT (REVERSE SUBJECT) UTF-8 SEEN"), [2, 4])
        # Equal keys (1 and 4 are both "beta") keep mailbox order, also under
        # REVERSE (RFC 5256 §2.2).
        self.assertEqual(self.sort(client, "UID SORT (REVERSE SUBJECT) UTF-8 ALL"),
                         [2, 3, 1, 4, 5])
        client.ok("UID STORE 1 +FLAGS (\\Deleted)")
        client.ok("EXPUNGE")
        # Sequence numbers are the view's: UID 2 is now message 1.
        self.assertEqual(self.sort(client, "SORT (DATE) UTF-8 ALL"), [3, 1, 4, 2])
        self.assertEqual(self.sort(client, "UID SORT (DATE) UTF-8 ALL"), [4, 2, 5, 3])
        self.assertEqual(self.sort(client, "UID SORT (SUBJECT) UTF-8 SUBJECT gamma"), [3])
        self.assertEqual(self.sort(client, "UID SORT (SUBJECT) UTF-8 NOT ALL"), [])

    def test_malformed_and_refused(self):
        client = self.connect()
        self.fill(client)
        for tag, command in (("b1", "SORT () UTF-8 ALL"), ("b2", "SORT (REVERSE) UTF-8 ALL"),
                             ("b3", "SORT (SENDER) UTF-8 ALL"), ("b4", "SORT (DATE) ALL"),
                             ("b5", "UID SORT (DATE) UTF-8"), ("b6", "SORT DATE UTF-8 ALL")):
            _, tagged = client.command(command, tag=tag)
            self.assertTagged(tagged, tag, "BAD")
        _, tagged = client.command("SORT (DATE) KOI8-R ALL", tag="n1")
        self.assertTagged(tagged, "n1", "NO", b"BADCHARSET")
        client.ok("UNSELECT")
        _, tagged = client.command("SORT (DATE) UTF-8 ALL", tag="b7")
        self.assertTagged(tagged, "b7", "BAD")


class EsortTest(Base):
    """RFC 5267 §3 ESORT (SORT RETURN) and §4.4 PARTIAL for SEARCH and SORT."""

    def esearch(self, client, command, tag):
        untagged, tagged = client.command(command, tag=tag)
        self.assertTagged(tagged, tag, "OK")
        self.assertEqual(len(untagged), 1, untagged)
        return untagged[0]

    def test_capabilities(self):
        caps = self.connect().ok("CAPABILITY")[0].split()
        for cap in (b"ESORT", b"CONTEXT=SEARCH", b"CONTEXT=SORT"):
            self.assertIn(cap, caps)

    def test_min_max_count_all_in_sort_order(self):
        client = self.connect()
        SortTest.fill(self, client)  # UID SORT (DATE) is 4 2 1 5 3
        self.assertEqual(self.esearch(client, "UID SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL",
                                      "e1"),
                         b'* ESEARCH (TAG "e1") UID MIN 4 MAX 3 COUNT 5')
        self.assertEqual(self.esearch(client, "UID SORT RETURN (ALL) (DATE) UTF-8 ALL", "e2"),
                         b'* ESEARCH (TAG "e2") UID ALL 4,2,1,5,3')
        # RETURN () means ALL; sequence numbers without UID.
        self.assertEqual(self.esearch(client, "SORT RETURN () (SUBJECT) UTF-8 ALL", "e3"),
                         b'* ESEARCH (TAG "e3") ALL 5,1,4,3,2')
        self.assertEqual(self.esearch(client, "SORT RETURN (MIN) (REVERSE DATE) UTF-8 2:4", "e4"),
                         b'* ESEARCH (TAG "e4") MIN 3')
        # Nothing matched: MIN, MAX and ALL are left out, COUNT is 0.
        self.assertEqual(self.esearch(client, "UID SORT RETURN (MIN MAX ALL COUNT) (DATE) UTF-8 "
                                      "SUBJECT nomatch", "e5"),
                         b'* ESEARCH (TAG "e5") UID COUNT 0')
        # SAVE: "$" holds the first in sort order when only MIN was asked.
        self.assertEqual(self.esearch(client, "UID SORT RETURN (SAVE MIN) (DATE) UTF-8 ALL", "e6"),
                         b'* ESEARCH (TAG "e6") UID MIN 4')
        self.assertEqual(client.ok("UID SEARCH UID $"), [b"* SEARCH 4"])
        # A plain SORT still answers SORT.
        self.assertEqual(client.ok("UID SORT (DATE) UTF-8 ALL"), [b"* SORT 4 2 1 5 3"])
        # With a MODSEQ criterion (RFC 7162 §3.1.5) the answer carries MODSEQ.
        untagged, tagged = client.command("UID SORT RETURN (COUNT) (DATE) UTF-8 MODSEQ 1",
                                          tag="e7")
        self.assertTagged(tagged, "e7", "OK")
        self.assertRegex(untagged[-1], rb'^\* ESEARCH \(TAG "e7"\) UID COUNT 5 MODSEQ [1-9]\d*$')

    def test_partial(self):
        client = self.connect()
        SortTest.fill(self, client)
        self.assertEqual(self.esearch(client, "UID SORT RETURN (PARTIAL 2:3) (DATE) UTF-8 ALL",
                                      "p1"),
                         b'* ESEARCH (TAG "p1") UID PARTIAL (2:3 2,1)')
        # Past the end: what there is, or NIL.
        self.assertEqual(self.esearch(client, "UID SORT RETURN (PARTIAL 4:100 COUNT) (DATE) "
                                      "UTF-8 ALL", "p2"),
                         b'* ESEARCH (TAG "p2") UID COUNT 5 PARTIAL (4:100 5,3)')
        self.assertEqual(self.esearch(client, "UID SORT RETURN (PARTIAL 6:9) (DATE) UTF-8 ALL",
                                      "p3"),
                         b'* ESEARCH (TAG "p3") UID PARTIAL (6:9 NIL)')
        # A reversed range is the same range.
        self.assertEqual(self.esearch(client, "SORT RETURN (PARTIAL 3:1) (SUBJECT) UTF-8 ALL",
                                      "p4"),
                         b'* ESEARCH (TAG "p4") PARTIAL (1:3 5,1,4)')
        # SEARCH: positions in ascending order.
        self.assertEqual(self.esearch(client, "UID SEARCH RETURN (PARTIAL 2:4 MIN) ALL", "p5"),
                         b'* ESEARCH (TAG "p5") UID MIN 1 PARTIAL (2:4 2:4)')
        self.assertEqual(self.esearch(client, "SEARCH RETURN (PARTIAL 1:5) SUBJECT nomatch",
                                      "p6"),
                         b'* ESEARCH (TAG "p6") PARTIAL (1:5 NIL)')

    def test_malformed(self):
        client = self.connect()
        SortTest.fill(self, client)
        for tag, command in (
                ("b1", "SORT RETURN (ALL PARTIAL 1:2) (DATE) UTF-8 ALL"),
                ("b2", "SEARCH RETURN (PARTIAL -1:-5) ALL"),
                ("b3", "SEARCH RETURN (PARTIAL 0:5) ALL"),
                ("b4", "SORT RETURN (BOGUS) (DATE) UTF-8 ALL"),
                ("b5", "SORT RETURN (MIN) UTF-8 ALL"),
                ("b6", "UID SORT RETURN (PARTIAL 1:2 PARTIAL 3:4) (DATE) UTF-8 ALL"),
                ("b7", "SEARCH RETURN (UPDATE SAVE) ALL")):
            _, tagged = client.command(command, tag=tag)
            self.assertTagged(tagged, tag, "BAD")


def dated_message(serial, date):
    return sort_message(serial, b"ctx %d" % serial, date, b"a@example.org", b"b@example.org")


def poll_all_until(client, predicate, timeout=10):
    """NOOPs until one untagged line satisfies predicate; returns every untagged
    line of those NOOPs (the changes may come in more than one)."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        lines = client.ok("NOOP")
        seen.extend(lines)
        if any(predicate(line) for line in lines):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError("NOOP never reported the change; saw %r" % seen)
        time.sleep(0.1)


class ContextTest(Base):
    """RFC 5267 §4.3 CONTEXT=SEARCH and CONTEXT=SORT: RETURN (UPDATE) keeps a
    result live; ADDTO and REMOVEFROM follow the changes; CANCELUPDATE."""

    def open(self, count):
        writer = self.connect()
        for i in range(count):
            append_raw(writer, "INBOX", MESSAGE)
        writer.ok("SELECT INBOX")
        watcher = self.connect(select="INBOX")
        return writer, watcher

    def live(self, client, command, tag):
        untagged, tagged = client.command(command, tag=tag)
        self.assertTagged(tagged, tag, "OK")
        return untagged

    def test_search_follows_arrivals_flags_and_expunges(self):
        writer, watcher = self.open(2)
        self.assertEqual(self.live(watcher, "UID SEARCH RETURN (UPDATE) UNSEEN", "s1"),
                         [b'* ESEARCH (TAG "s1") UID ALL 1:2'])
        # Another session's APPEND: after the EXISTS, ADDTO at its place.
        append_raw(writer, "INBOX", MESSAGE)
        lines = poll_all_until(watcher, lambda l: l.startswith(b'* ESEARCH (TAG "s1")'))
        self.assertIn(b"* 3 EXISTS", lines)
        self.assertEqual(lines[-1], b'* ESEARCH (TAG "s1") UID ADDTO (3 3)')
        # A flag change that takes a message out of the result.
        writer.ok("UID STORE 1 +FLAGS.SILENT (\\Seen)")
        lines = poll_all_until(watcher, lambda l: l.startswith(b'* ESEARCH (TAG "s1")'))
        self.assertEqual(lines[-1], b'* ESEARCH (TAG "s1") UID REMOVEFROM (1 1)')
        # ... and one that brings it back.
        writer.ok("UID STORE 1 -FLAGS.SILENT (\\Seen)")
        lines = poll_all_until(watcher, lambda l: l.startswith(b'* ESEARCH (TAG "s1")'))
        self.assertEqual(lines[-1], b'* ESEARCH (TAG "s1") UID ADDTO (1 1)')
        # An expunge.
        writer.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
        writer.ok("EXPUNGE")
        lines = poll_all_until(watcher, lambda l: l.startswith(b'* ESEARCH (TAG "s1")'))
        self.assertIn(b"* 2 EXPUNGE", lines)
        self.assertEqual(lines[-1], b'* ESEARCH (TAG "s1") UID REMOVEFROM (2 2)')
        # The session's own change is reported before its tagged OK.
        lines = watcher.ok("UID STORE 3 +FLAGS.SILENT (\\Seen)")
        self.assertIn(b'* ESEARCH (TAG "s1") UID REMOVEFROM (2 3)', lines)
        # Nothing changed: nothing said.
        self.assertEqual(watcher.ok("NOOP"), [])

    def test_sort_positions_are_in_sort_order(self):
        writer = self.connect()
        append_raw(writer, "INBOX", dated_message(1, b"Mon, 5 Jan 2026 10:00:00 +0000"))
        append_raw(writer, "INBOX", dated_message(2, b"Wed, 7 Jan 2026 10:00:00 +0000"))
        writer.ok("SELECT INBOX")
        watcher = self.connect(select="INBOX")
        self.assertEqual(self.live(watcher, "UID SORT RETURN (UPDATE) (DATE) UTF-8 ALL", "o1"),
                         [b'* ESEARCH (TAG "o1") UID ALL 1:2'])
        self.assertEqual(self.live(watcher, "UID SORT RETURN (UPDATE COUNT) (REVERSE DATE) "
                                   "UTF-8 ALL", "o2"),
                         [b'* ESEARCH (TAG "o2") UID COUNT 2'])
        # Dated between the two: second by DATE, second by REVERSE DATE too.
        append_raw(writer, "INBOX", dated_message(3, b"Tue, 6 Jan 2026 10:00:00 +0000"))
        lines = poll_all_until(watcher, lambda l: l.startswith(b'* ESEARCH (TAG "o2")'))
        self.assertIn(b'* ESEARCH (TAG "o1") UID ADDTO (2 3)', lines)
        self.assertIn(b'* ESEARCH (TAG "o2") UID ADDTO (2 3)', lines)
        # The newest first under REVERSE DATE, last under DATE.
        append_raw(writer, "INBOX", dated_message(4, b"Thu, 8 Jan 2026 10:00:00 +0000"))
        lines = poll_all_until(watcher, lambda l: l.startswith(b'* ESEARCH (TAG "o2")'))
        self.assertIn(b'* ESEARCH (TAG "o1") UID ADDTO (4 4)', lines)
        self.assertIn(b'* ESEARCH (TAG "o2") UID ADDTO (1 4)', lines)
        # Sort order 1 3 2 4: removing UID 2 empties position 3.
        writer.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
        writer.ok("EXPUNGE")
        lines = poll_all_until(watcher, lambda l: l.startswith(b'* ESEARCH (TAG "o1")'))
        self.assertIn(b'* ESEARCH (TAG "o1") UID REMOVEFROM (3 2)', lines)
        self.assertIn(b'* ESEARCH (TAG "o2") UID REMOVEFROM (2 2)', lines)

    def test_updates_during_idle(self):
        writer, watcher = self.open(1)
        self.live(watcher, "UID SEARCH RETURN (UPDATE) ALL", "i0")
        watcher.send(b"i1 IDLE\r\n")
        watcher.expect_continuation()
        append_raw(writer, "INBOX", MESSAGE)
        lines = watcher.read_lines_until(lambda l: l.startswith(b'* ESEARCH'), timeout=10)
        self.assertIn(b"* 2 EXISTS", lines)
        self.assertEqual(lines[-1], b'* ESEARCH (TAG "i0") UID ADDTO (2 2)')
        watcher.send(b"DONE\r\n")
        _, tagged = watcher.read_tagged("i1")
        self.assertTagged(tagged, "i1", "OK")

    def test_cancelupdate(self):
        writer, watcher = self.open(1)
        self.live(watcher, "UID SEARCH RETURN (UPDATE) ALL", "c1")
        self.live(watcher, "SEARCH RETURN (UPDATE MIN) ALL", "c2")
        _, tagged = watcher.command('CANCELUPDATE "c1"', tag="c3")
        self.assertTagged(tagged, "c3", "OK")
        append_raw(writer, "INBOX", MESSAGE)
        lines = poll_all_until(watcher, lambda l: l.startswith(b"* ESEARCH"))
        self.assertEqual([l for l in lines if l.startswith(b"* ESEARCH")],
                         [b'* ESEARCH (TAG "c2") UID ADDTO (2 2)'])
        # Unknown tags (or one cancelled already) are BAD, and nothing is cancelled.
        for tag, command in (("c4", 'CANCELUPDATE "c1"'), ("c5", 'CANCELUPDATE "c2" "zz"'),
                             ("c6", "CANCELUPDATE c2"), ("c7", "CANCELUPDATE")):
            _, tagged = watcher.command(command, tag=tag)
            self.assertTagged(tagged, tag, "BAD")
        _, tagged = watcher.command('CANCELUPDATE "c2"', tag="c8")
        self.assertTagged(tagged, "c8", "OK")
        # Live results end with the selection.
        self.live(watcher, "UID SEARCH RETURN (UPDATE) ALL", "c9")
        watcher.ok("UNSELECT")
        watcher.ok("SELECT INBOX")
        _, tagged = watcher.command('CANCELUPDATE "c9"', tag="c10")
        self.assertTagged(tagged, "c10", "BAD")

    def test_live_results_per_session_limit(self):
        # --max-live-results defaults to 8: the eighth is kept, the ninth is NO [LIMIT].
        _, watcher = self.open(1)
        for i in range(8):
            self.live(watcher, "UID SEARCH RETURN (UPDATE) ALL", "l%d" % i)
        untagged, tagged = watcher.command("UID SORT RETURN (UPDATE) (DATE) UTF-8 ALL", tag="l8")
        self.assertTagged(tagged, "l8", "NO", b"LIMIT")
        self.assertEqual(untagged, [])
        # The same tag again replaces its live result, which counts once.
        self.live(watcher, "UID SEARCH RETURN (UPDATE) ALL", "l0")
        # Without UPDATE the search is answered as usual.
        self.live(watcher, "UID SEARCH RETURN (COUNT) ALL", "l9")
        _, tagged = watcher.command('CANCELUPDATE "l3"', tag="l10")
        self.assertTagged(tagged, "l10", "OK")
        self.live(watcher, "UID SORT RETURN (UPDATE) (DATE) UTF-8 ALL", "l11")

    def test_live_result_size_limit(self):
        gateway = SYSTEM.start_gateway("--gateway-id=std-ctx", "--max-live-result-size=2")
        writer = self.connect(gateway=gateway)
        for _ in range(2):
            append_raw(writer, "INBOX", MESSAGE)
        watcher = self.connect(gateway=gateway, select="INBOX")
        # At the limit: kept.
        self.live(watcher, "UID SEARCH RETURN (UPDATE) ALL", "z1")
        self.live(watcher, "UID SEARCH RETURN (UPDATE) UID 1", "z2")
        append_raw(writer, "INBOX", MESSAGE)
        # z1 would hold 3: it stops being updated, and says so.
        lines = poll_all_until(watcher, lambda l: b"NOUPDATE" in l)
        self.assertIn(b'* NO [NOUPDATE "z1"]', b"\n".join(lines))
        self.assertFalse(any(l.startswith(b'* ESEARCH (TAG "z1")') for l in lines), lines)
        _, tagged = watcher.command('CANCELUPDATE "z1"', tag="z3")
        self.assertTagged(tagged, "z3", "BAD")
        # Over it from the start: NO [LIMIT], no result.
        untagged, tagged = watcher.command("UID SEARCH RETURN (UPDATE) ALL", tag="z4")
        self.assertTagged(tagged, "z4", "NO", b"LIMIT")
        self.assertEqual(untagged, [])
        _, tagged = watcher.command('CANCELUPDATE "z2"', tag="z5")
        self.assertTagged(tagged, "z5", "OK")
        self.assertTrue(gateway.alive())

    def test_no_live_results_allowed(self):
        # --max-live-results=0: CONTEXT is not advertised and UPDATE is refused;
        # ESORT and PARTIAL stay.
        gateway = SYSTEM.start_gateway("--gateway-id=std-ctx0", "--max-live-results=0")
        client = self.connect(gateway=gateway)
        append_raw(client, "INBOX", MESSAGE)
        caps = client.ok("CAPABILITY")[0].split()
        self.assertIn(b"ESORT", caps)
        self.assertNotIn(b"CONTEXT=SEARCH", caps)
        self.assertNotIn(b"CONTEXT=SORT", caps)
        client.ok("SELECT INBOX")
        untagged, tagged = client.command("UID SEARCH RETURN (UPDATE) ALL", tag="y1")
        self.assertTagged(tagged, "y1", "NO", b"LIMIT")
        self.assertEqual(untagged, [])
        untagged, tagged = client.command("UID SORT RETURN (PARTIAL 1:1) (DATE) UTF-8 ALL",
                                          tag="y2")
        self.assertTagged(tagged, "y2", "OK")
        self.assertEqual(untagged, [b'* ESEARCH (TAG "y2") UID PARTIAL (1:1 1)'])


class ThreadTest(Base):
    """RFC 5256 THREAD=ORDEREDSUBJECT and THREAD=REFERENCES."""

    def thread(self, client, command):
        lines = client.ok(command)
        self.assertEqual(len(lines), 1, lines)
        return lines[0]

    def test_references(self):
        client = self.connect()
        messages = [
            # UID 1: a thread's start; 2 replies to it; 3 replies to 2 naming
            # only its parent in In-Reply-To; 4 and 5 reply to a message that is
            # not in the mailbox; 6 has the subject of 1 but no references.
            (b"Topic", b"Mon, 5 Jan 2026 10:00:00 +0000", b"Message-ID: <m1@x>\r\n"),
            (b"Re: Topic", b"Mon, 5 Jan 2026 11:00:00 +0000",
             b"Message-ID: <m2@x>\r\nReferences: <m1@x>\r\n"),
            (b"Re: Topic", b"Mon, 5 Jan 2026 12:00:00 +0000",
             b"Message-ID: <m3@x>\r\nIn-Reply-To: <m2@x>\r\n"),
            (b"Re: Lost", b"Tue, 6 Jan 2026 12:00:00 +0000",
             b"Message-ID: <m4@x>\r\nReferences: <gone@x>\r\n"),
            (b"Re: Lost", b"Tue, 6 Jan 2026 11:00:00 +0000",
             b"Message-ID: <m5@x>\r\nReferences: <gone@x>\r\n"),
            (b"Re: Topic", b"Sun, 4 Jan 2026 09:00:00 +0000", b"Message-ID: <m6@x>\r\n"),
        ]
        for i, (subject, date, extra) in enumerate(messages):
            append_raw(client, "INBOX", sort_message(i, subject, date, b"a@x", b"b@x",
                                                     extra=extra))
        client.ok("SELECT INBOX")
        # 6 is a reply by its subject, so it goes under 1 (step 5.C), a sibling
        # of 2, before it by date. 4 and 5 hang from a dummy, by date.
        self.assertEqual(self.thread(client, "UID THREAD REFERENCES UTF-8 ALL"),
                         b"* THREAD (1 (6)(2 3))((5)(4))")
        self.assertEqual(self.thread(client, "THREAD REFERENCES US-ASCII ALL"),
                         b"* THREAD (1 (6)(2 3))((5)(4))")
        # Only the matches are threaded: without 2, 3 has no parent here.
        self.assertEqual(self.thread(client, "UID THREAD REFERENCES UTF-8 NOT UID 2"),
                         b"* THREAD (1 (6)(3))((5)(4))")
        # Sequence numbers of the view after an expunge.
        client.ok("UID STORE 1 +FLAGS (\\Deleted)")
        client.ok("EXPUNGE")
        self.assertEqual(self.thread(client, "THREAD REFERENCES UTF-8 ALL"),
                         b"* THREAD ((5)(1 2))((4)(3))")
        self.assertEqual(self.thread(client, "UID THREAD REFERENCES UTF-8 ALL"),
                         b"* THREAD ((6)(2 3))((5)(4))")

    def test_orderedsubject(self):
        client = self.connect()
        for i, (subject, date) in enumerate([
                (b"b", b"Mon, 5 Jan 2026 10:00:00 +0000"),
                (b"Re: a", b"Mon, 5 Jan 2026 09:00:00 +0000"),
                (b"RE: B", b"Tue, 6 Jan 2026 10:00:00 +0000"),
                (b"Fwd: b", b"Mon, 5 Jan 2026 11:00:00 +0000"),
                (b"c", b"Wed, 7 Jan 2026 10:00:00 +0000")]):
            append_raw(client, "INBOX", sort_message(i, subject, date, b"a@x", b"b@x"))
        client.ok("SELECT INBOX")
        self.assertEqual(self.thread(client, "UID THREAD ORDEREDSUBJECT UTF-8 ALL"),
                         b"* THREAD (2)(1 (4)(3))(5)")
        self.assertEqual(self.thread(client, "UID THREAD ORDEREDSUBJECT UTF-8 NOT ALL"),
                         b"* THREAD")

    def test_malformed(self):
        client = self.connect(select="INBOX")
        for tag, command in (("b1", "THREAD X-SMART UTF-8 ALL"), ("b2", "THREAD REFERENCES ALL"),
                             ("b3", "THREAD REFERENCES UTF-8"), ("b4", "THREAD")):
            _, tagged = client.command(command, tag=tag)
            self.assertTagged(tagged, tag, "BAD")
        _, tagged = client.command("UID THREAD REFERENCES ISO-2022-JP ALL", tag="n1")
        self.assertTagged(tagged, "n1", "NO", b"BADCHARSET")


STATUS_LINE = re.compile(rb"^\* STATUS (\S+) \(MESSAGES (\d+) UIDNEXT (\d+) UIDVALIDITY (\d+) "
                         rb"UNSEEN (\d+)( HIGHESTMODSEQ \d+)?\)$")


def statuses(lines):
    """{mailbox: (messages, uidnext, unseen)} of the unsolicited STATUS lines."""
    found = {}
    for line in lines:
        match = STATUS_LINE.match(line)
        if match:
            found[match.group(1).decode()] = (int(match.group(2)), int(match.group(3)),
                                              int(match.group(5)))
    return found


class NotifyTest(Base):
    """RFC 5465: other mailboxes' message events as unsolicited STATUS."""

    WATCH = ("NOTIFY SET STATUS (SELECTED (MessageNew MessageExpunge FlagChange)) "
             "(MAILBOXES (INBOX Other) (MessageNew MessageExpunge FlagChange))")

    def poll_status(self, client, mailbox, wanted):
        """NOOPs until a STATUS of `mailbox` says `wanted`; each NOOP carries at
        most one STATUS of it (changes coalesce). Returns every line seen."""
        seen = []

        def predicate(line):
            seen.append(line)
            return statuses([line]).get(mailbox) == wanted

        deadline = time.monotonic() + 10
        while True:
            lines = client.ok("NOOP")
            self.assertLessEqual(
                sum(1 for line in lines if line.startswith(b"* STATUS %s " % mailbox.encode())),
                1, lines)
            if any(predicate(line) for line in lines):
                return seen
            self.assertLess(time.monotonic(), deadline, "no STATUS %s %r: %r"
                            % (mailbox, wanted, seen[-10:]))
            time.sleep(0.05)

    def test_watched_mailboxes_report_status_during_idle_and_after_commands(self):
        writer = self.connect()
        writer.ok("CREATE Other")
        writer.ok("CREATE Selected")
        watcher = self.connect(select="Selected")
        self.assertIn(b"NOTIFY", watcher.ok("CAPABILITY")[0].split())
        # SET STATUS: where each watched mailbox stands now (not the selected one).
        initial = watcher.ok(self.WATCH)
        self.assertEqual(statuses(initial), {"INBOX": (0, 1, 0), "Other": (0, 1, 0)})
        self.assertEqual(len(initial), 2, initial)
        # During IDLE: the STATUS comes without any command.
        tag = watcher.tag()
        watcher.send(b"%s IDLE\r\n" % tag.encode())
        watcher.expect_continuation()
        append_raw(writer, "Other", MESSAGE)
        self.assertEqual(statuses([watcher.read_line()]), {"Other": (1, 2, 1)})
        watcher.send(b"DONE\r\n")
        _, tagged = watcher.read_tagged(tag)
        self.assertTagged(tagged, tag, "OK")
        # After a command: INBOX's new message.
        append_raw(writer, "INBOX", MESSAGE)
        self.poll_status(watcher, "INBOX", (1, 2, 1))
        # FlagChange: \Seen set in Other changes its UNSEEN.
        writer.ok("SELECT Other")
        writer.ok("STORE 1 +FLAGS (\\Seen)")
        self.poll_status(watcher, "Other", (1, 2, 0))
        # MessageExpunge.
        writer.ok("STORE 1 +FLAGS (\\Deleted)")
        writer.ok("EXPUNGE")
        self.poll_status(watcher, "Other", (0, 2, 0))
        # The selected mailbox: RFC 3501's EXISTS, never a STATUS.
        append_raw(writer, "Selected", MESSAGE)
        lines = poll_until(watcher, "NOOP", lambda line: line == b"* 1 EXISTS")
        self.assertNotIn("Selected", statuses(lines))
        # NOTIFY NONE: no more STATUS. The later change of the selected mailbox
        # is reported, so the earlier one of Other was delivered too.
        watcher.ok("NOTIFY NONE")
        append_raw(writer, "Other", MESSAGE)
        append_raw(writer, "Selected", MESSAGE)
        lines = poll_until(watcher, "NOOP", lambda line: line == b"* 2 EXISTS")
        lines += watcher.ok("NOOP")
        self.assertEqual(statuses(lines), {}, lines)

    def test_a_burst_of_changes_is_one_status_per_round(self):
        writer = self.connect()
        writer.ok("CREATE Other")
        watcher = self.connect()
        self.assertEqual(watcher.ok("NOTIFY SET (MAILBOXES Other (MessageNew MessageExpunge))"),
                         [])
        for _ in range(30):
            append_raw(writer, "Other", MESSAGE)
        # However the feed spreads 30 appends over the NOOPs, each NOOP carries at
        # most one STATUS of Other, the last one says 30.
        self.poll_status(watcher, "Other", (30, 31, 30))
        # During IDLE the 30 appends of a burst come as a few STATUS lines, the
        # last with every message counted.
        tag = watcher.tag()
        watcher.send(b"%s IDLE\r\n" % tag.encode())
        watcher.expect_continuation()
        for _ in range(30):
            append_raw(writer, "Other", MESSAGE)
        lines = watcher.read_lines_until(lambda line: statuses([line]).get("Other") ==
                                         (60, 61, 60))
        self.assertLess(len(lines), 30, lines)
        watcher.send(b"DONE\r\n")
        _, tagged = watcher.read_tagged(tag)
        self.assertTagged(tagged, tag, "OK")

    def test_filters_personal_subtree_inboxes(self):
        client = self.connect()
        for name in ("Lists", "Lists/a", "Lists/b", "Work"):
            client.ok("CREATE " + name)
        lines = client.ok("NOTIFY SET STATUS (SUBTREE Lists (MessageNew MessageExpunge))")
        self.assertEqual(sorted(statuses(lines)), ["Lists", "Lists/a", "Lists/b"])
        lines = client.ok("NOTIFY SET STATUS (INBOXES (MessageNew MessageExpunge))")
        self.assertEqual(sorted(statuses(lines)), ["INBOX"])
        # The first group naming a mailbox decides: Work is left out by its
        # NONE group, the rest of PERSONAL is watched.
        lines = client.ok("NOTIFY SET STATUS (MAILBOXES Work NONE) "
                          "(PERSONAL (MessageNew MessageExpunge FlagChange))")
        self.assertEqual(sorted(statuses(lines)), ["INBOX", "Lists", "Lists/a", "Lists/b"])
        # A mailbox that does not exist is simply not watched.
        self.assertEqual(client.ok("NOTIFY SET STATUS (MAILBOXES (Nope INBOX) "
                                   "(MessageNew MessageExpunge))"),
                         [b"* STATUS INBOX (MESSAGES 0 UIDNEXT 1 UIDVALIDITY %s UNSEEN 0)"
                          % statuses_uidvalidity(client, "INBOX")])
        # Without STATUS, nothing is sent until something changes.
        self.assertEqual(client.ok("NOTIFY SET (PERSONAL (MessageNew MessageExpunge))"), [])

    def test_condstore_adds_highestmodseq(self):
        client = self.connect()
        client.ok("CREATE Other")
        self.assertNotIn(b"HIGHESTMODSEQ",
                         client.ok("NOTIFY SET STATUS (MAILBOXES Other (MessageNew "
                                   "MessageExpunge))")[0])
        client.ok("ENABLE CONDSTORE")
        line = client.ok("NOTIFY SET STATUS (MAILBOXES Other (MessageNew MessageExpunge))")[0]
        self.assertRegex(line, rb"^\* STATUS Other \(MESSAGES 0 UIDNEXT 1 UIDVALIDITY \d+ "
                               rb"UNSEEN 0 HIGHESTMODSEQ \d+\)$")
        writer = self.connect()
        append_raw(writer, "Other", MESSAGE)
        lines = poll_until(client, "NOOP", lambda line: line.startswith(b"* STATUS Other "))
        self.assertRegex(lines[-1], rb"MESSAGES 1 UIDNEXT 2 .* HIGHESTMODSEQ \d+\)$")

    def poll_lines(self, client, wanted):
        """NOOPs until the untagged line `wanted` comes; returns every line seen."""
        seen = []
        deadline = time.monotonic() + 10
        while True:
            lines = client.ok("NOOP")
            seen += lines
            if wanted in lines:
                return seen
            self.assertLess(time.monotonic(), deadline, "no %r: %r" % (wanted, seen[-10:]))
            time.sleep(0.05)

    def test_mailbox_name_and_subscription_change_of_another_session(self):
        # RFC 5465 §5.4, §5.5: LIST lines for the mailbox list's changes.
        writer = self.connect()
        watcher = self.connect()
        self.assertEqual(watcher.ok("NOTIFY SET (PERSONAL (MessageNew MessageExpunge "
                                    "MailboxName SubscriptionChange))"), [])
        # During IDLE, as they happen.
        tag = watcher.tag()
        watcher.send(b"%s IDLE\r\n" % tag.encode())
        watcher.expect_continuation()
        writer.ok("CREATE Fresh")
        self.assertEqual(watcher.read_line(), b'* LIST () "/" Fresh')
        writer.ok("SUBSCRIBE Fresh")
        self.assertEqual(watcher.read_line(), b'* LIST (\\Subscribed) "/" Fresh')
        watcher.send(b"DONE\r\n")
        _, tagged = watcher.read_tagged(tag)
        self.assertTagged(tagged, tag, "OK")
        # After a command: a rename names the old name (OLDNAME), for each
        # mailbox of the hierarchy renamed.
        writer.ok("CREATE Fresh/leaf")
        self.poll_lines(watcher, b'* LIST () "/" Fresh/leaf')
        writer.ok("RENAME Fresh Renamed")
        seen = self.poll_lines(watcher, b'* LIST () "/" Renamed/leaf ("OLDNAME" (Fresh/leaf))')
        self.assertIn(b'* LIST () "/" Renamed ("OLDNAME" (Fresh))', seen)
        # Subscriptions stay with the name (RFC 3501 §6.3.6).
        writer.ok("UNSUBSCRIBE Fresh")
        self.poll_lines(watcher, b'* LIST () "/" Fresh')
        writer.ok("DELETE Renamed/leaf")
        self.poll_lines(watcher, b'* LIST (\\NonExistent) "/" Renamed/leaf')
        # A deleted mailbox with inferiors stays as \Noselect.
        writer.ok("CREATE Renamed/again")
        writer.ok("DELETE Renamed")
        self.poll_lines(watcher, b'* LIST (\\Noselect) "/" Renamed')
        # Names in modified UTF-7 (RFC 3501 §5.1.3), as LIST gives them.
        writer.ok("CREATE Entw&APw-rfe")
        self.poll_lines(watcher, b'* LIST () "/" Entw&APw-rfe')

    def test_metadata_changes_of_another_session(self):
        # RFC 5465 §5.6, §5.7: RFC 5464 §4.4.2's unsolicited METADATA, naming
        # the entries that changed.
        writer = self.connect()
        watcher = self.connect()
        self.assertEqual(watcher.ok("NOTIFY SET (PERSONAL (MessageNew MessageExpunge "
                                    "MailboxMetadataChange ServerMetadataChange))"), [])
        tag = watcher.tag()
        watcher.send(b"%s IDLE\r\n" % tag.encode())
        watcher.expect_continuation()
        writer.ok('SETMETADATA INBOX (/private/comment "hello")')
        self.assertEqual(watcher.read_line(), b"* METADATA INBOX /private/comment")
        writer.ok('SETMETADATA "" (/private/vendor/x "1")')
        self.assertEqual(watcher.read_line(), b'* METADATA "" /private/vendor/x')
        watcher.send(b"DONE\r\n")
        _, tagged = watcher.read_tagged(tag)
        self.assertTagged(tagged, tag, "OK")
        # After a command; removing an entry is a change too, removing none is not.
        writer.ok("SETMETADATA INBOX (/private/comment NIL /shared/none NIL)")
        writer.ok("SETMETADATA INBOX (/private/none NIL)")
        writer.ok('SETMETADATA INBOX (/shared/comment "s")')
        seen = self.poll_lines(watcher, b"* METADATA INBOX /shared/comment")
        self.assertIn(b"* METADATA INBOX /private/comment", seen)
        self.assertFalse([line for line in seen if b"none" in line], seen)
        # Only the events asked for: with MailboxMetadataChange for INBOX alone,
        # neither another mailbox's entries nor the server's are reported.
        writer.ok("CREATE Other")
        self.assertEqual(watcher.ok("NOTIFY SET (INBOXES (MailboxMetadataChange))"), [])
        writer.ok('SETMETADATA Other (/private/comment "o")')
        writer.ok('SETMETADATA "" (/private/vendor/y "2")')
        writer.ok('SETMETADATA INBOX (/private/last "l")')
        seen = self.poll_lines(watcher, b"* METADATA INBOX /private/last")
        self.assertFalse([line for line in seen if b"Other" in line or b'""' in line], seen)

    def test_a_mailbox_created_later_is_watched(self):
        writer = self.connect()
        watcher = self.connect()
        self.assertEqual(watcher.ok("NOTIFY SET (PERSONAL (MessageNew MessageExpunge "
                                    "MailboxName))"), [])
        writer.ok("CREATE Later")
        append_raw(writer, "Later", MESSAGE)
        # Watched from its creation: its first message is reported however soon
        # it came.
        seen = self.poll_lines(watcher, b'* LIST () "/" Later')
        if not any(statuses([line]).get("Later") == (1, 2, 1) for line in seen):
            self.poll_status(watcher, "Later", (1, 2, 1))
        # Subscribed into a SUBSCRIBED filter: watched from then on.
        self.assertEqual(watcher.ok("NOTIFY SET (SUBSCRIBED (MessageNew MessageExpunge "
                                    "SubscriptionChange))"), [])
        writer.ok("CREATE Sub")
        writer.ok("SUBSCRIBE Sub")
        self.poll_lines(watcher, b'* LIST (\\Subscribed) "/" Sub')
        append_raw(writer, "Sub", MESSAGE)
        self.poll_status(watcher, "Sub", (1, 2, 1))
        # A mailbox outside every filter is neither listed nor watched.
        writer.ok("CREATE Outside")
        append_raw(writer, "Outside", MESSAGE)
        append_raw(writer, "Sub", MESSAGE)
        seen = self.poll_lines(watcher, b"* STATUS Sub (MESSAGES 2 UIDNEXT 3 UIDVALIDITY %s "
                               b"UNSEEN 2)" % statuses_uidvalidity(writer, "Sub"))
        self.assertFalse([line for line in seen if b"Outside" in line], seen)

    def test_the_sessions_own_changes_are_reported_too(self):
        client = self.connect()
        client.ok("NOTIFY SET (PERSONAL (MailboxName SubscriptionChange))")
        seen = client.ok("CREATE Own")
        if b'* LIST () "/" Own' not in seen:
            self.poll_lines(client, b'* LIST () "/" Own')
        seen = client.ok("SUBSCRIBE Own")
        if b'* LIST (\\Subscribed) "/" Own' not in seen:
            self.poll_lines(client, b'* LIST (\\Subscribed) "/" Own')

    def test_unsupported_events_and_malformed_commands(self):
        client = self.connect()
        client.ok("CREATE Other")
        for events in ("MessageNew MessageExpunge FlagChange AnnotationChange",
                       "X-Whatever"):
            untagged, tagged = self.command(
                client, "NOTIFY SET (PERSONAL (%s))" % events, "b1")
            self.assertEqual(untagged, [])
            self.assertTagged(tagged, "b1", "NO",
                              b"BADEVENT (MessageNew MessageExpunge FlagChange MailboxName "
                              b"SubscriptionChange MailboxMetadataChange ServerMetadataChange)")
        _, tagged = self.command(
            client, "NOTIFY SET (SELECTED (MessageNew (UID FLAGS) MessageExpunge))", "b2")
        self.assertTagged(tagged, "b2", "NO", b"CANNOT")
        # A refused NOTIFY leaves the previous one in force.
        client.ok("NOTIFY SET (MAILBOXES Other (MessageNew MessageExpunge))")
        _, tagged = self.command(
            client, "NOTIFY SET (PERSONAL (MessageNew MessageExpunge AnnotationChange))", "b3")
        self.assertTagged(tagged, "b3", "NO", b"BADEVENT")
        writer = self.connect()
        append_raw(writer, "Other", MESSAGE)
        self.poll_status(client, "Other", (1, 2, 1))
        for text, wanted in (
                ("NOTIFY", b"BAD"), ("NOTIFY ON", b"NOTIFY SET or NOTIFY NONE"),
                ("NOTIFY SET (EVERYWHERE (MessageNew MessageExpunge))",
                 b"unknown mailbox filter EVERYWHERE"),
                ("NOTIFY SET (PERSONAL (MessageNew))", b"together"),
                ("NOTIFY SET (PERSONAL (FlagChange))", b"FlagChange"),
                ("NOTIFY SET (INBOXES (MessageNew (UID) MessageExpunge))", b"only for SELECTED"),
                ("NOTIFY SET (SELECTED NONE) (SELECTED NONE)", b"more than once")):
            _, tagged = self.command(client, text, "m1")
            self.assertTagged(tagged, "m1", "BAD")
            self.assertIn(wanted, tagged)
        self.assertEqual(client.ok("NOTIFY NONE"), [])
        client2 = self.connect(login=False)
        _, tagged = client2.command("NOTIFY NONE", tag="a2")
        self.assertTagged(tagged, "a2", "BAD")


def statuses_uidvalidity(client, mailbox):
    line = client.ok("STATUS %s (UIDVALIDITY)" % mailbox)[0]
    return re.search(rb"UIDVALIDITY (\d+)", line).group(1)


class NotifyLimitTest(unittest.TestCase):
    # --max-notify-mailboxes: at the bound NOTIFY is accepted, over it NO [LIMIT]
    # and the previous NOTIFY stays; 0 turns NOTIFY off, and it is not advertised.
    def test_bound_and_disabled(self):
        system = harness.System("std-notify")
        try:
            system.start_service()
            bounded = system.start_gateway("--max-notify-mailboxes=2")
            disabled = system.start_gateway("--max-notify-mailboxes=0")
            user, password = system.new_user("n")
            client = RawClient(bounded.imaps_port, "tls", cafile=system.cert)
            client.login(user, password)
            client.ok("CREATE A")
            client.ok("CREATE B")
            lines = client.ok("NOTIFY SET STATUS (MAILBOXES (INBOX A) (MessageNew MessageExpunge))")
            self.assertEqual(sorted(statuses(lines)), ["A", "INBOX"])
            _, tagged = client.command(
                "NOTIFY SET STATUS (PERSONAL (MessageNew MessageExpunge))", tag="l1")
            self.assertTrue(tagged.startswith(
                b"l1 NO [LIMIT] NOTIFY would watch more than 2 mailboxes"), tagged)
            # A NONE group counts nothing: two mailboxes watched again.
            lines = client.ok("NOTIFY SET STATUS (MAILBOXES A NONE) "
                              "(PERSONAL (MessageNew MessageExpunge))")
            self.assertEqual(sorted(statuses(lines)), ["B", "INBOX"])
            writer = RawClient(bounded.imaps_port, "tls", cafile=system.cert)
            writer.login(user, password)
            append_raw(writer, "B", MESSAGE)
            poll_until(client, "NOOP", lambda line: statuses([line]).get("B") == (1, 2, 1))
            off = RawClient(disabled.imaps_port, "tls", cafile=system.cert)
            off.login(user, password)
            self.assertNotIn(b"NOTIFY", off.ok("CAPABILITY")[0].split())
            _, tagged = off.command("NOTIFY NONE", tag="l2")
            self.assertEqual(tagged, b"l2 BAD NOTIFY is not enabled on this server")
            for c in (client, writer, off):
                c.close()
            self.assertTrue(bounded.alive() and disabled.alive())
        finally:
            system.stop()
FORWARDED = (b"From: Alice <alice@example.org>\r\n"
             b"To: Bob <bob@example.org>\r\n"
             b"Subject: the report\r\n"
             b"MIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
             b"\r\n"
             b"--b1\r\n"
             b"Content-Type: text/plain\r\n"
             b"\r\n"
             b"Here it is.\r\n"
             b"--b1\r\n"
             b"Content-Type: application/octet-stream; name=\"r.bin\"\r\n"
             b"Content-Transfer-Encoding: base64\r\n"
             b"\r\n"
             b"AAECAwQFBgcICQ==\r\n"
             b"--b1--\r\n")


def literal_of(line):
    """The data of the (first) literal in a response line."""
    match = re.search(rb"\{(\d+)\}\r\n", line)
    assert match, line
    return line[match.end():match.end() + int(match.group(1))]


def catenate(client, mailbox, parts, tag=None):
    """Sends APPEND mailbox CATENATE (parts) with LITERAL+ TEXT literals; parts are
    ("TEXT", bytes) or ("URL", str). Returns the tagged line."""
    tag = tag or client.tag()
    wire = []
    for kind, value in parts:
        if kind == "TEXT":
            wire.append(b"TEXT {%d+}\r\n%s" % (len(value), value))
        else:
            wire.append(b'URL "%s"' % value.encode())
    client.send(b"%s APPEND %s CATENATE (%s)\r\n"
                % (tag.encode(), mailbox.encode(), b" ".join(wire)))
    return client.read_tagged(tag)[1]


class CatenateTest(Base):
    """RFC 4469: APPEND ... CATENATE (TEXT literal / URL "imap-url" ...), assembled by
    the gateway from TEXT literals and sections of the user's own messages."""

    def source(self, client, mailbox="INBOX"):
        """Appends FORWARDED to `mailbox`; returns (uidvalidity, uid)."""
        _, tagged = append_raw(client, mailbox, FORWARDED)
        match = re.search(rb"\[APPENDUID (\d+) (\d+)\]", tagged)
        return int(match.group(1)), int(match.group(2))

    def fetch(self, client, mailbox, uid, item):
        client.ok("EXAMINE " + mailbox)
        lines = client.ok("UID FETCH %d (%s)" % (uid, item))
        client.ok("UNSELECT")
        return lines

    def catenate(self, client, mailbox, parts, tag=None):
        return catenate(client, mailbox, parts, tag)

    def test_forward_a_part_without_downloading_it(self):
        client = self.connect()
        self.assertIn(b"CATENATE", client.ok("CAPABILITY")[0].split())
        client.ok("CREATE Drafts")
        uidvalidity, uid = self.source(client)
        base = "/INBOX;UIDVALIDITY=%d/;UID=%d" % (uidvalidity, uid)
        head = (b"From: Bob <bob@example.org>\r\nSubject: Fwd: the report\r\n"
                b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"fw\"\r\n"
                b"\r\n--fw\r\n")
        tail = b"\r\n--fw--\r\n"
        # A synchronizing TEXT literal first, then URLs and a LITERAL+ one.
        tag = client.tag()
        client.send(b"%s APPEND Drafts (\\Draft) CATENATE (TEXT {%d}\r\n"
                    % (tag.encode(), len(head)))
        client.expect_continuation()
        client.send(head + b' URL "%s/;SECTION=2.MIME" URL "%s/;section=2" TEXT {%d+}\r\n%s)\r\n'
                    % (base.encode(), base.encode(), len(tail), tail))
        _, tagged = client.read_tagged(tag)
        self.assertTagged(tagged, tag, "OK", b"APPENDUID")
        new_uid = int(re.search(rb"\[APPENDUID \d+ (\d+)\]", tagged).group(1))
        lines = self.fetch(client, "INBOX", uid, "FLAGS BODY.PEEK[2.MIME] BODY.PEEK[2]")
        mime = literal_of(lines[0].split(b"BODY[2.MIME]", 1)[1])
        part = literal_of(lines[0].split(b"BODY[2]", 1)[1])
        self.assertEqual(part, b"AAECAwQFBgcICQ==")
        built = self.fetch(client, "Drafts", new_uid, "BODY.PEEK[] FLAGS")
        self.assertEqual(literal_of(built[0]), head + mime + part + tail)
        self.assertIn(b"\\Draft", built[0])
        # The source was read as BODY.PEEK: not \Seen.
        self.assertNotIn(b"\\Seen", self.fetch(client, "INBOX", uid, "FLAGS")[0])
        # A whole message, a header, a text and a byte range.
        tagged = self.catenate(client, "Drafts", [
            ("URL", base), ("URL", base + "/;SECTION=HEADER"),
            ("URL", base + "/;SECTION=TEXT/;PARTIAL=2.5"), ("URL", base + "/;SECTION=1")])
        self.assertIn(b"OK [APPENDUID", tagged)
        new_uid = int(re.search(rb"\[APPENDUID \d+ (\d+)\]", tagged).group(1))
        header, text = FORWARDED.split(b"\r\n\r\n", 1)
        self.assertEqual(literal_of(self.fetch(client, "Drafts", new_uid, "BODY.PEEK[]")[0]),
                         FORWARDED + header + b"\r\n\r\n" + text[2:7] + b"Here it is.")

    def test_bad_urls_store_nothing(self):
        client = self.connect()
        client.ok("CREATE Drafts")
        uidvalidity, uid = self.source(client)
        other, other_password = SYSTEM.new_user("std")
        with RawClient(GATEWAY.imaps_port, "tls", cafile=SYSTEM.cert) as theirs:
            theirs.login(other, other_password)
            their_validity, their_uid = self.source(theirs)
        client.ok("SELECT INBOX")
        client.ok("UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
        uidvalidity2, uid2 = self.source(client)
        client.ok("UID EXPUNGE %d" % uid)
        good = "/INBOX;UIDVALIDITY=%d/;UID=%d" % (uidvalidity2, uid2)
        for url, why in (
                ("/INBOX;UIDVALIDITY=%d/;UID=%d" % (uidvalidity + 1, uid2), b"UIDVALIDITY"),
                ("/INBOX;UIDVALIDITY=%d/;UID=%d" % (uidvalidity, uid), b"no message"),
                ("/INBOX/;UID=%d/;SECTION=7" % uid2, b"no such section"),
                ("/Nowhere/;UID=1", b"no such mailbox"),
                (good + ";URLAUTH=anonymous", b"URLAUTH"),
                ("imap://%s@localhost/INBOX;UIDVALIDITY=%d/;UID=%d"
                 % (other, their_validity, their_uid), b"absolute URL"),
                ("imap://%s@localhost/INBOX/;UID=%d" % (self.user, uid2), b"absolute URL"),
                ("/INBOX/;UID=x", b"not an IMAP URL")):
            tag = client.tag()
            tagged = self.catenate(client, "Drafts", [("TEXT", b"X: 1\r\n"), ("URL", url),
                                                      ("URL", good)], tag=tag)
            self.assertTagged(tagged, tag, "NO", b"BADURL " + url.encode())
            self.assertIn(why, tagged)
        self.assertEqual(client.ok("STATUS Drafts (MESSAGES)"), [b"* STATUS Drafts (MESSAGES 0)"])
        # RFC 4469 §3: refused instead of the "+" of a later synchronizing literal.
        tag = client.tag()
        client.send(b'%s APPEND Drafts CATENATE (URL "/Nowhere/;UID=1" TEXT {5}\r\n'
                    % tag.encode())
        _, tagged = client.read_tagged(tag)
        self.assertTagged(tagged, tag, "NO", b"BADURL /Nowhere/;UID=1")
        client.ok("NOOP")
        # And in a MULTIAPPEND the whole command stores nothing.
        tag = client.tag()
        client.send(b'%s APPEND Drafts {3+}\r\nabc CATENATE (URL "%s" URL "/INBOX/;UID=999")\r\n'
                    % (tag.encode(), good.encode()))
        self.assertTagged(client.read_tagged(tag)[1], tag, "NO", b"BADURL")
        self.assertEqual(client.ok("STATUS Drafts (MESSAGES)"), [b"* STATUS Drafts (MESSAGES 0)"])

    def test_malformed_catenate_is_bad(self):
        client = self.connect()
        client.ok("CREATE Drafts")
        for text in ("APPEND Drafts CATENATE ()", "APPEND Drafts CATENATE (URL)",
                     'APPEND Drafts CATENATE (BODY "/INBOX/;UID=1")',
                     'APPEND Drafts CATENATE (URL "/INBOX/;UID=1"'):
            tag = client.tag()
            _, tagged = self.command(client, text, tag)
            self.assertTagged(tagged, tag, "BAD")
        client.ok("NOOP")

    def test_multiappend_with_catenate(self):
        client = self.connect()
        client.ok("CREATE Drafts")
        uidvalidity, uid = self.source(client)
        url = "/INBOX;UIDVALIDITY=%d/;UID=%d/;SECTION=1" % (uidvalidity, uid)
        tag = client.tag()
        client.send(b'%s APPEND Drafts CATENATE (TEXT {4+}\r\nA: 1 URL "%s") (\\Seen) {5+}\r\n'
                    b'plain CATENATE (URL "%s" TEXT {2+}\r\n!!)\r\n'
                    % (tag.encode(), url.encode(), url.encode()))
        _, tagged = client.read_tagged(tag)
        self.assertTagged(tagged, tag, "OK", b"APPENDUID")
        uids = re.search(rb"\[APPENDUID \d+ (\S+)\]", tagged).group(1)
        self.assertEqual(uids, b"1:3")
        bodies = [literal_of(self.fetch(client, "Drafts", n, "BODY.PEEK[]")[0])
                  for n in (1, 2, 3)]
        self.assertEqual(bodies, [b"A: 1Here it is.", b"plain", b"Here it is.!!"])

    def test_quota_applies_to_the_assembled_message(self):
        client = self.connect()
        client.ok("CREATE Drafts")
        uidvalidity, uid = self.source(client)
        SYSTEM.admin("quota", "set", self.user, "--storage=1")
        url = "/INBOX;UIDVALIDITY=%d/;UID=%d" % (uidvalidity, uid)
        tag = client.tag()
        tagged = self.catenate(client, "Drafts", [("URL", url), ("URL", url), ("URL", url)],
                               tag=tag)
        self.assertTagged(tagged, tag, "NO", b"OVERQUOTA")
        self.assertEqual(client.ok("STATUS Drafts (MESSAGES)"), [b"* STATUS Drafts (MESSAGES 0)"])


class CatenateLimitTest(unittest.TestCase):
    """The assembled message stays within APPENDLIMIT (--max-append-size), and a message
    has at most --max-catenate-parts parts; each checked at the limit. Absolute URLs
    name one of --catenate-url-hosts and the logged-in user."""

    @classmethod
    def setUpClass(cls):
        cls.gateway = SYSTEM.start_gateway("--gateway-id=std-catenate", "--max-append-size=300",
                                           "--max-catenate-parts=3",
                                           "--catenate-url-hosts=imap.example.test, "
                                           "Mail.Example.TEST")

    def setUp(self):
        self.user, self.password = SYSTEM.new_user("std")
        self.client = RawClient(self.gateway.imaps_port, "tls", cafile=SYSTEM.cert)
        self.client.login(self.user, self.password)
        self.client.ok("CREATE Drafts")

    def tearDown(self):
        self.client.close()
        self.assertTrue(self.gateway.alive(), self.gateway.log()[-3000:])

    def test_parts_and_size_at_the_limit(self):
        client = self.client
        _, tagged = append_raw(client, "INBOX", sized_message(200, 1))
        url = "/INBOX/;UID=%s" % re.search(rb"\[APPENDUID \d+ (\d+)\]", tagged).group(1).decode()
        # 3 parts, 300 octets: at both limits.
        tag = client.tag()
        tagged = catenate(client, "Drafts", [("TEXT", b"a" * 50), ("URL", url),
                                                  ("TEXT", b"b" * 50)], tag=tag)
        self.assertTrue(tagged.startswith(tag.encode() + b" OK [APPENDUID"), tagged)
        # One part more: BAD [LIMIT] before anything is read from the store.
        tag = client.tag()
        tagged = catenate(client, "Drafts", [("TEXT", b"a"), ("TEXT", b"b"),
                                                  ("TEXT", b"c"), ("TEXT", b"d")], tag=tag)
        self.assertTrue(tagged.startswith(tag.encode() + b" BAD [LIMIT]"), tagged)
        # One octet more: NO [TOOBIG], whether the TEXT or the URL part crosses it.
        for parts in ([("TEXT", b"a" * 51), ("URL", url), ("TEXT", b"b" * 50)],
                      [("TEXT", b"a" * 101), ("URL", url)]):
            tag = client.tag()
            tagged = catenate(client, "Drafts", parts, tag=tag)
            self.assertTrue(tagged.startswith(tag.encode() + b" NO [TOOBIG]"), tagged)
        client.ok("NOOP")
        self.assertEqual(client.ok("STATUS Drafts (MESSAGES)"), [b"* STATUS Drafts (MESSAGES 1)"])

    def test_absolute_urls_of_a_configured_host(self):
        client = self.client
        _, tagged = append_raw(client, "INBOX", sized_message(100, 1))
        validity, uid = re.search(rb"\[APPENDUID (\d+) (\d+)\]", tagged).groups()
        path = "/INBOX;UIDVALIDITY=%s/;UID=%s" % (validity.decode(), uid.decode())
        for host in ("mail.example.test", "MAIL.example.test:993", "imap.example.test"):
            url = "imap://%s;AUTH=*@%s%s" % (self.user, host, path)
            tag = client.tag()
            tagged = catenate(client, "Drafts", [("URL", url)], tag=tag)
            self.assertTrue(tagged.startswith(tag.encode() + b" OK [APPENDUID"), tagged)
        for url in ("imap://%s@other.example.test%s" % (self.user, path),
                    "imap://someone-else@mail.example.test%s" % path,
                    "imap://mail.example.test%s" % path):  # anonymous
            tag = client.tag()
            tagged = catenate(client, "Drafts", [("URL", url)], tag=tag)
            self.assertTrue(tagged.startswith(b"%s NO [BADURL %s]" % (tag.encode(), url.encode())),
                            tagged)
        self.assertEqual(client.ok("STATUS Drafts (MESSAGES)"), [b"* STATUS Drafts (MESSAGES 3)"])
