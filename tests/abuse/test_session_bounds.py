"""Bounds per command and per session in the gateway (docs/security.md): SEARCH
amplification over a mailbox with many holes, live search and sort results (RFC 5267)
under an append flood, literals held by connections that have not logged in, the queue
of unreported changes of idle sessions, sessions watching many mailboxes with NOTIFY,
BODY[] of message data that holds NUL, and LOGIN after login. Each attack runs at a
size that takes
seconds, gets a clear answer, keeps the gateway's memory growth bounded and leaves the
canary session working."""

import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abuse_util  # noqa: E402
from abuse_util import harness  # noqa: E402
from abuse_util import ConnectionClosed  # noqa: E402

SYSTEM = None
# Small enough that the overflow test reaches it with a few MULTIAPPENDs; the
# coalescing test stays far below it.
MAX_PENDING_CHANGES = 1000
# Short, so the slow-literal test ends in seconds: each APPEND literal must arrive
# within READ_TIMEOUT s plus its size at MIN_APPEND_RATE octets/s.
READ_TIMEOUT = 8
MIN_APPEND_RATE = 2000


def setUpModule():
    global SYSTEM
    SYSTEM = abuse_util.AbuseSystem(
        "session", gateway_flags=("--max-pending-changes=%d" % MAX_PENDING_CHANGES,
                                  "--read-timeout=%ds" % READ_TIMEOUT,
                                  "--min-append-rate=%d" % MIN_APPEND_RATE,
                                  # 100 unauthenticated connections come from one
                                  # address here; the per-IP cap has its own tests.
                                  "--max-connections-per-ip=1000"))
    unittest.addModuleCleanup(SYSTEM.stop)


class Sampler:
    """Polls the RSS of both processes every 20 ms while an attack runs, so the peak
    of a short burst is seen, not only the reading at the end."""

    def __init__(self, measurement):
        self.measurement = measurement
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            self.measurement.sample()
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def metric(name):
    return harness.metric_total(SYSTEM.gateway.http_port, name)


def message(i, size=0):
    body = b"body %d\r\n" % i
    if size:
        body = body + b"x" * size + b"\r\n"
    return b"Subject: m%d\r\nFrom: a@example.org\r\n\r\n" % i + body


def multiappend(client, mailbox, count, first=0, per_command=400):
    """Appends `count` messages to `mailbox` with MULTIAPPEND (RFC 3502) and
    non-synchronizing literals, `per_command` messages per command."""
    done = 0
    while done < count:
        n = min(per_command, count - done)
        tag = client.tag()
        parts = [b"%s APPEND %s" % (tag.encode(), mailbox.encode())]
        for i in range(first + done, first + done + n):
            data = message(i)
            parts.append(b" {%d+}\r\n%s" % (len(data), data))
        client.send(b"".join(parts) + b"\r\n")
        _, tagged = client.read_tagged(tag, timeout=60)
        if not tagged.startswith(tag.encode() + b" OK"):
            raise AssertionError("MULTIAPPEND failed: %r" % tagged)
        done += n


def assert_tagged(test, tagged, tag, status):
    test.assertTrue(tagged.startswith(("%s %s " % (tag, status)).encode()), tagged)


class SearchAmplificationTest(unittest.TestCase):
    """A SEARCH of many sequence-set keys in a mailbox with 1,000 holes used to be
    expanded into one UID range per hole per key on the worker thread (an 8 KB
    "SEARCH 1:* 1:* ..." took the gateway from 36 to 258 MiB)."""

    @classmethod
    def setUpClass(cls):
        cls.client = SYSTEM.client(login=True, timeout=60)
        cls.client.ok("CREATE gaps")
        multiappend(cls.client, "gaps", 2000)
        # Selected after the appends, so this session holds \Recent for all of them.
        cls.client.ok("SELECT gaps")
        # Expunge every even UID: UIDs 1, 3, ..., 1999 remain, with 999 holes.
        cls.client.ok("UID STORE %s +FLAGS.SILENT (\\Deleted)"
                      % ",".join(str(uid) for uid in range(2, 2001, 2)))
        cls.client.ok("EXPUNGE", timeout=60)
        lines = cls.client.ok("SEARCH ALL")
        assert len(lines[0].split()) == 2 + 1000, lines[0][:100]

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def timed(self, text):
        start = time.monotonic()
        tag = self.client.tag()
        untagged, tagged = self.client.command(text, tag=tag, timeout=30)
        return tag, untagged, tagged, time.monotonic() - start

    def test_many_whole_mailbox_sets(self):
        # 16,000 keys in one 64 KiB line. Each "1:*" costs one UID range now.
        text = "SEARCH" + " 1:*" * 16000
        with SYSTEM.measure("SEARCH 1:* x 16,000 (1,000 holes)") as m, Sampler(m):
            tag, untagged, tagged, seconds = self.timed(text)
            m.check(gateway_kib=32 * 1024, service_kib=128 * 1024)
        self.assertLess(seconds, 10, tagged)
        # Either answered (every message matches) or refused with a clear limit by the
        # mailbox service's own bounds on the size of a search.
        if tagged.startswith(tag.encode() + b" OK"):
            self.assertEqual(len(untagged[-1].split()), 2 + 1000, untagged[-1][:80])
        else:
            self.assertRegex(tagged, rb"^\S+ NO \[LIMIT\] \S")
        SYSTEM.assert_canary_alive()

    def test_many_sparse_sets(self):
        # "1,3,5,...,999" names 500 messages that are not adjacent UIDs either; 28
        # such keys fill most of a line.
        sparse = ",".join(str(seq) for seq in range(1, 1000, 2))
        text = "SEARCH" + (" " + sparse) * 28
        with SYSTEM.measure("SEARCH 1,3,5,... x 28 (1,000 holes)") as m, Sampler(m):
            tag, untagged, tagged, seconds = self.timed(text)
            m.check(gateway_kib=32 * 1024, service_kib=128 * 1024)
        self.assertLess(seconds, 10, tagged)
        if tagged.startswith(tag.encode() + b" OK"):
            self.assertEqual(untagged[-1].split()[2:],
                             [b"%d" % seq for seq in range(1, 1000, 2)])
        else:
            self.assertRegex(tagged, rb"^\S+ NO \[LIMIT\] \S")
        SYSTEM.assert_canary_alive()

    def test_range_bound_is_exact_and_answered_no_limit(self):
        # \Recent is 1,000 separate UIDs here: each RECENT key is 1,000 ranges, so
        # 100 keys are exactly the default bound of 100,000 and 101 are over it.
        refusals = metric("imapd_gateway_search_limit_refusals_total")
        with SYSTEM.measure("SEARCH RECENT x 2,000 (over the range bound)") as m, Sampler(m):
            tag, _, tagged, seconds = self.timed("SEARCH" + " RECENT" * 2000)
            m.check(gateway_kib=32 * 1024, service_kib=64 * 1024)
        self.assertLess(seconds, 5, tagged)
        self.assertRegex(tagged, rb"^\S+ NO \[LIMIT\] SEARCH refused: .*100000")
        tag, _, tagged, _ = self.timed("SEARCH" + " RECENT" * 101)
        assert_tagged(self, tagged, tag, "NO")
        self.assertIn(b"[LIMIT]", tagged)
        tag, untagged, tagged, _ = self.timed("SEARCH" + " RECENT" * 100)
        if tagged.startswith(tag.encode() + b" OK"):
            self.assertEqual(len(untagged[-1].split()), 2 + 1000, untagged[-1][:80])
        else:
            # Within the gateway's bound; only the service's own bound may refuse it.
            self.assertRegex(tagged, rb"^\S+ NO \[LIMIT\] \S")
            self.assertNotIn(b"SEARCH refused: the search criteria", tagged)
        self.assertGreaterEqual(metric("imapd_gateway_search_limit_refusals_total"), refusals + 2)
        # The session is still usable.
        self.client.ok("NOOP")
        SYSTEM.assert_canary_alive()


class LiveResultsTest(unittest.TestCase):
    """RFC 5267 live results: every SEARCH/SORT with RETURN (UPDATE) keeps its result
    in the session and costs a search by the service per change batch. A session
    takes the default 8 (the ninth is NO [LIMIT]) over 2,000 messages while another
    appends 1,000 more: the gateway's growth stays bounded, the live session is told
    of every arrival, and the canary keeps working."""

    def test_eight_live_sorts_under_an_append_flood(self):
        watcher = SYSTEM.client(login=True, timeout=60)
        writer = SYSTEM.client(login=True, timeout=60)
        try:
            watcher.ok("CREATE live")
            multiappend(writer, "live", 2000)
            watcher.ok("SELECT live")
            with SYSTEM.measure("8 live SORTs of 2,000 messages, 1,000 arrivals") as m, \
                    Sampler(m):
                for i in range(8):
                    tag = "live%d" % i
                    untagged, tagged = watcher.command(
                        "UID SORT RETURN (UPDATE COUNT) (REVERSE SIZE) UTF-8 ALL", tag=tag,
                        timeout=30)
                    assert_tagged(self, tagged, tag, "OK")
                    self.assertEqual(untagged, [b'* ESEARCH (TAG "%s") UID COUNT 2000'
                                                % tag.encode()])
                untagged, tagged = watcher.command(
                    "UID SEARCH RETURN (UPDATE) ALL", tag="over", timeout=30)
                assert_tagged(self, tagged, "over", "NO")
                self.assertIn(b"[LIMIT]", tagged)
                self.assertEqual(untagged, [])
                multiappend(writer, "live", 1000, first=2000, per_command=250)
                added = {}
                deadline = time.monotonic() + 30
                while (len(added) < 8 or min(added.values()) < 1000) and \
                        time.monotonic() < deadline:
                    for line in watcher.ok("NOOP", timeout=30):
                        live = re.match(rb'\* ESEARCH \(TAG "(live\d)"\) UID ', line)
                        if live is None:
                            continue
                        for step in re.finditer(rb"ADDTO \(\d+ ([\d:,]+)\)", line):
                            count = 0
                            for part in step.group(1).split(b","):
                                first, _, last = part.partition(b":")
                                count += abs(int(last or first) - int(first)) + 1
                            added[live.group(1)] = added.get(live.group(1), 0) + count
                    time.sleep(0.05)
                m.check(gateway_kib=32 * 1024)
            self.assertEqual(len(added), 8, added)
            self.assertEqual(set(added.values()), {1000}, added)
            _, tagged = watcher.command('CANCELUPDATE "live0" "live1"', tag="c1")
            assert_tagged(self, tagged, "c1", "OK")
        finally:
            watcher.close()
            writer.close()
        SYSTEM.assert_canary_alive()


class UnauthenticatedLiteralTest(unittest.TestCase):
    """Before login a connection could make the gateway buffer 1 MiB of literals (200
    connections took it from 19 to 234 MiB). Now literals before authentication may
    total 8 KiB per command, checked before "+" is sent."""

    def test_hundred_connections_with_big_literals_are_refused(self):
        # The attack: LOGIN with 16 literals of 60,000 octets each (each within the
        # 64 KiB literal limit, 1 MiB in total) on 100 connections that never log in.
        literal = b"x" * 60000
        clients = []
        with SYSTEM.measure("100 unauthenticated connections, 1 MiB of literals") as m, \
                Sampler(m):
            try:
                for _ in range(100):
                    c = SYSTEM.client(mode="plain")
                    clients.append(c)
                    c.send(b"a LOGIN {60000}\r\n")
                for c in clients:
                    # Refused instead of "+": the client never sends the data.
                    self.assertRegex(c.read_line(), rb"^a BAD \[TOOBIG\] .*log in first")
                # Non-synchronizing: the data is on its way. Within the literal limit
                # it is read and dropped, never held, and the connection stays usable.
                for c in clients:
                    c.send(b"b LOGIN" + b"".join(b" {60000+}\r\n" + literal
                                                 for _ in range(16)) + b"\r\n")
                for c in clients:
                    self.assertRegex(c.read_line(), rb"^b BAD \[TOOBIG\] .*log in first")
                    self.assertTrue(c.alive())
                # Beyond what can be skipped: BAD, then BYE.
                for c in clients[:20]:
                    c.send_tolerant(b"d LOGIN {1048576+}\r\n" + b"x" * 65536)
                for c in clients[:20]:
                    self.assertRegex(c.read_line(), rb"^d BAD \[TOOBIG\] ")
                    self.assertTrue(c.read_line().startswith(b"* BYE "))
                m.check(gateway_kib=16 * 1024, service_kib=16 * 1024)
            finally:
                for c in clients:
                    c.close()
        SYSTEM.assert_canary_alive()

    def test_budget_boundary(self):
        c = SYSTEM.client()
        try:
            # 4,096 + 4,096 octets: exactly the default budget of 8,192.
            user = SYSTEM.user.encode().ljust(4096, b"_")
            c.send(b"l1 LOGIN {4096}\r\n")
            c.expect_continuation()
            c.send(user + b" {4096}\r\n")
            c.expect_continuation()
            c.send(b"p" * 4096 + b"\r\n")
            _, tagged = c.read_tagged("l1")
            # Parsed and answered by LOGIN itself (a wrong password), not refused.
            self.assertRegex(tagged, rb"^l1 (NO|BAD) ")
            self.assertNotIn(b"TOOBIG", tagged)
            # One octet more is refused before "+".
            c.send(b"l2 LOGIN {4096}\r\n")
            c.expect_continuation()
            c.send(user + b" {4097}\r\n")
            self.assertRegex(c.read_line(), rb"^l2 BAD \[TOOBIG\] ")
            # After login the ordinary limits apply: a 60,000-octet literal is fine.
            c.login(SYSTEM.user, SYSTEM.password)
            c.send(b"s1 STATUS {60000}\r\n")
            c.expect_continuation()
            c.send(b"n" * 60000 + b" (MESSAGES)\r\n")
            _, tagged = c.read_tagged("s1")
            # No such mailbox, but the literal was taken.
            self.assertRegex(tagged, rb"^s1 (NO|BAD) ")
            self.assertNotIn(b"TOOBIG", tagged)
        finally:
            c.close()


class ChangeQueueTest(unittest.TestCase):
    """Sessions that select a mailbox and stop reading used to queue every change
    another session made (20 idle EXAMINE sessions, 80 toggles of 1,000 messages: 21
    to 193 MiB). Flag changes of one message now replace each other, and a session
    whose queue still overflows is ended with BYE."""

    def idle_sessions(self, mailbox, count):
        sessions = []
        for _ in range(count):
            c = SYSTEM.client(login=True, timeout=60)
            c.ok("EXAMINE %s" % mailbox)
            sessions.append(c)
        return sessions

    def test_flag_storms_coalesce(self):
        writer = SYSTEM.client(login=True, timeout=60)
        writer.ok("CREATE storm")
        multiappend(writer, "storm", 500)
        writer.ok("SELECT storm")
        idle = self.idle_sessions("storm", 10)
        coalesced = metric("imapd_gateway_changes_coalesced_total")
        try:
            with SYSTEM.measure("10 idle sessions, 40 STOREs of 500 messages") as m, Sampler(m):
                for i in range(40):
                    writer.ok("STORE 1:* %sFLAGS.SILENT (\\Flagged)" % ("+" if i % 2 == 0 else "-"))
                # Let the feed deliver everything to the idle sessions' queues.
                time.sleep(1.0)
                # Without coalescing this grew the gateway by about 21 MiB.
                m.check(gateway_kib=10 * 1024, service_kib=64 * 1024)
            self.assertGreater(metric("imapd_gateway_changes_coalesced_total"), coalesced)
            for c in idle:
                # One FETCH per message with its latest flags, not one per change.
                untagged = c.ok("NOOP", timeout=30)
                fetches = [line for line in untagged if b" FETCH " in line]
                self.assertEqual(len(fetches), 500, untagged[:3])
                self.assertTrue(all(b"\\Flagged" not in line for line in fetches), fetches[:3])
        finally:
            for c in idle:
                c.close()
            writer.close()
        SYSTEM.assert_canary_alive()

    def test_another_sessions_change_is_not_lost_in_a_coalesced_own_change(self):
        # B flags message 1 while A is quiet; A then stores on the same message with
        # .SILENT. A's own change replaces B's in A's queue, so A must still be told
        # the message's flags, including B's \Flagged.
        a = SYSTEM.client(login=True)
        b = SYSTEM.client(login=True)
        try:
            a.ok("CREATE mixed")
            multiappend(a, "mixed", 3)
            a.ok("SELECT mixed")
            b.ok("SELECT mixed")
            b.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
            time.sleep(0.5)  # the feed delivers B's change to A's queue
            untagged = a.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
            fetches = [line for line in untagged if line.startswith(b"* 1 FETCH")]
            self.assertTrue(any(b"\\Flagged" in line for line in fetches), untagged)
        finally:
            a.close()
            b.close()

    def test_own_large_store_does_not_end_the_session(self):
        # The feed may deliver a session's own changes after its STORE has ended;
        # 1,200 of them are more than --max-pending-changes but must not end it.
        c = SYSTEM.client(login=True, timeout=60)
        try:
            c.ok("CREATE ownstore")
            multiappend(c, "ownstore", MAX_PENDING_CHANGES + 200)
            c.ok("SELECT ownstore")
            for i in range(4):
                c.ok("STORE 1:* %sFLAGS.SILENT (\\Flagged)" % ("+" if i % 2 == 0 else "-"),
                     timeout=60)
                time.sleep(0.3)
                c.ok("NOOP")
        finally:
            c.close()

    def test_overflowing_session_gets_bye(self):
        writer = SYSTEM.client(login=True, timeout=60)
        writer.ok("CREATE flood")
        idle = self.idle_sessions("flood", 3)
        overflows = metric("imapd_gateway_change_queue_overflows_total")
        try:
            with SYSTEM.measure("3 idle sessions, 1,200 messages added") as m, Sampler(m):
                multiappend(writer, "flood", MAX_PENDING_CHANGES + 200)
                for c in idle:
                    # Woken without sending anything: BYE, then the connection closes.
                    line = c.read_line(timeout=10)
                    self.assertRegex(line, rb"^\* BYE Too many changes .*reconnect")
                    with self.assertRaises(ConnectionClosed):
                        c.read_line(timeout=10)
                m.check(gateway_kib=32 * 1024, service_kib=64 * 1024)
            self.assertGreaterEqual(metric("imapd_gateway_change_queue_overflows_total"), overflows + 3)
            # The writer's own session was reading: it is fine, and a reconnecting
            # client sees everything.
            writer.ok("NOOP")
            fresh = SYSTEM.client(login=True)
            lines = fresh.ok("EXAMINE flood")
            self.assertIn(b"* %d EXISTS" % (MAX_PENDING_CHANGES + 200), lines)
            fresh.close()
        finally:
            for c in idle:
                c.close()
            writer.close()
        SYSTEM.assert_canary_alive()


class NotifyWatchTest(unittest.TestCase):
    """NOTIFY (RFC 5465) lets a session watch every mailbox of the user. Sessions
    watching many mailboxes while another session floods them must cost a listener
    per mailbox, not a queue entry per change: a mailbox's changes coalesce into one
    STATUS per round."""

    MAILBOXES = 20
    PER_MAILBOX = 100

    def test_watchers_of_a_flood_get_a_few_status_lines(self):
        writer = SYSTEM.client(login=True, timeout=60)
        names = ["watched%d" % i for i in range(self.MAILBOXES)]
        for name in names:
            writer.ok("CREATE " + name)
        watchers = []
        try:
            for _ in range(10):
                c = SYSTEM.client(login=True, timeout=60)
                c.ok("NOTIFY SET (SUBTREE (%s) (MessageNew MessageExpunge FlagChange))"
                     % " ".join(names))
                tag = c.tag()
                c.send(b"%s IDLE\r\n" % tag.encode())
                c.expect_continuation()
                watchers.append((c, tag))
            with SYSTEM.measure("10 sessions watching 20 mailboxes, 2,000 appends") as m, \
                    Sampler(m):
                for name in names:
                    multiappend(writer, name, self.PER_MAILBOX, per_command=self.PER_MAILBOX)
                final = re.compile(rb"^\* STATUS (watched\d+) \(MESSAGES %d " % self.PER_MAILBOX)
                for c, _ in watchers:
                    done = set()

                    def all_final(line, done=done):
                        match = final.match(line)
                        if match:
                            done.add(match.group(1))
                        return len(done) == self.MAILBOXES

                    lines = c.read_lines_until(all_final, timeout=60)
                    statuses = [line for line in lines if line.startswith(b"* STATUS ")]
                    # One per mailbox per round at most: far fewer than the 2,000
                    # changes, whatever the speed of the appends.
                    self.assertLess(len(statuses), self.MAILBOXES * self.PER_MAILBOX // 4,
                                    statuses[:5])
                m.check(gateway_kib=16 * 1024, service_kib=64 * 1024)
            for c, tag in watchers:
                c.send(b"DONE\r\n")
                _, tagged = c.read_tagged(tag, timeout=30)
                assert_tagged(self, tagged, tag, "OK")
        finally:
            for c, _ in watchers:
                c.close()
            writer.close()
        SYSTEM.assert_canary_alive()


class LongCommandTest(unittest.TestCase):
    """A client decides how long a command lasts: an APPEND literal sent an octet at a
    time, a FETCH it does not read. Changes other sessions make meanwhile used to be
    queued without any bound until the command ended; a second session of the same
    user appending and storing could grow the stalled one until the gateway ran out
    of memory. Now a hard bound applies during a command too (twice
    --max-pending-changes plus the mailbox size), and one literal must arrive at
    --min-append-rate."""

    def flood(self, writer, mailbox, rounds):
        """Alternates MULTIAPPENDs and STOREs of the whole mailbox: an addition between
        two flag changes keeps them from coalescing."""
        for i in range(rounds):
            multiappend(writer, mailbox, 400, first=i * 400)
            writer.ok("STORE 1:* %sFLAGS.SILENT (\\Flagged)" % ("+" if i % 2 == 0 else "-"),
                      timeout=60)

    def test_session_stalled_in_an_append_literal_is_ended(self):
        writer = SYSTEM.client(login=True, timeout=60)
        writer.ok("CREATE stall")
        writer.ok("SELECT stall")
        stalled = SYSTEM.client(login=True, timeout=30)
        stalled.ok("SELECT stall")
        # A large literal, of which only the first octets come.
        tag = stalled.tag()
        stalled.send(b"%s APPEND INBOX {100000}\r\n" % tag.encode())
        stalled.expect_continuation()
        stalled.send(b"Subject: never finished\r\n")
        overflows = metric("imapd_gateway_change_queue_overflows_total")
        try:
            with SYSTEM.measure("session stalled in APPEND, 6 x (400 APPEND + STORE)") as m, \
                    Sampler(m):
                # 2,400 additions and 8,400 flag changes; the bound during the
                # command is 2 * 1,000 + 0 messages in the view.
                self.flood(writer, "stall", 6)
                line = stalled.read_line(timeout=READ_TIMEOUT - 2)
                self.assertRegex(line, rb"^\* BYE Too many changes .*reconnect")
                with self.assertRaises(ConnectionClosed):
                    stalled.read_line(timeout=10)
                m.check(gateway_kib=16 * 1024, service_kib=64 * 1024)
            self.assertGreater(metric("imapd_gateway_change_queue_overflows_total"), overflows)
            writer.ok("NOOP")
        finally:
            stalled.close()
            writer.close()
        SYSTEM.assert_canary_alive()

    def test_session_fetching_without_reading_is_ended(self):
        writer = SYSTEM.client(login=True, timeout=60)
        writer.ok("CREATE slowread")
        writer.ok("SELECT slowread")
        big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 3000  # 3 MB
        for _ in range(8):
            writer.ok("APPEND slowread {%d+}\r\n%s" % (len(big), big.decode()), timeout=60)
        reader = SYSTEM.client(login=True, timeout=30)
        reader.ok("SELECT slowread")
        tag = reader.tag()
        # 24 MB of FETCH data that the client does not read: the gateway's write
        # blocks once the socket buffers are full.
        reader.send(b"%s FETCH 1:* (BODY.PEEK[])\r\n" % tag.encode())
        time.sleep(1.0)
        try:
            with SYSTEM.measure("session not reading a FETCH, 6 x (400 APPEND + STORE)") as m, \
                    Sampler(m):
                self.flood(writer, "slowread", 6)
                m.check(gateway_kib=16 * 1024, service_kib=64 * 1024)
            # The connection was closed in the middle of the response: reading what
            # the socket still holds ends without the FETCH's tagged completion.
            lines = []
            with self.assertRaises(ConnectionClosed):
                while True:
                    lines.append(reader.read_line(timeout=20))
            self.assertFalse(any(line.startswith(tag.encode() + b" ") for line in lines))
            writer.ok("NOOP")
        finally:
            reader.close()
            writer.close()
        SYSTEM.assert_canary_alive()

    def test_append_literal_trickled_below_the_minimum_rate(self):
        c = SYSTEM.client(login=True, timeout=30)
        size = 4000  # may take READ_TIMEOUT + 2 s at MIN_APPEND_RATE
        too_slow = metric("imapd_gateway_append_too_slow_total")
        try:
            tag = c.tag()
            c.send(b"%s APPEND INBOX {%d}\r\n" % (tag.encode(), size))
            c.expect_continuation()
            start = time.monotonic()
            sent = 0
            # 100 octets per second, each read well within --read-timeout: this
            # literal would take 40 s.
            bye = None
            while sent < size and time.monotonic() - start < 30:
                if not c.send_tolerant(b"y" * 50):
                    break
                sent += 50
                try:
                    bye = c.read_line(timeout=0.5)
                    break
                except TimeoutError:
                    pass
            if bye is None:
                bye = c.read_line(timeout=5)
            elapsed = time.monotonic() - start
            self.assertRegex(bye, rb"^\* BYE APPEND message data arrived too slowly: 4000 "
                                  rb"octets must arrive at 2000 octets per second")
            self.assertLess(sent, size)
            self.assertGreater(elapsed, READ_TIMEOUT + size / MIN_APPEND_RATE - 1)
            self.assertLess(elapsed, READ_TIMEOUT + size / MIN_APPEND_RATE + 3)
            with self.assertRaises(ConnectionClosed):
                c.read_line(timeout=10)
            self.assertEqual(metric("imapd_gateway_append_too_slow_total"), too_slow + 1)
        finally:
            c.close()
        SYSTEM.assert_canary_alive()


class NulInMessageDataTest(unittest.TestCase):
    """A literal8 APPEND (RFC 3516 §4.1) may store NUL octets, which an ordinary
    literal may not carry (RFC 3501 §4.3): BODY[] and RFC822 of such data are refused
    with NO [UNKNOWN-CTE]; BINARY[] returns it as literal8."""

    @classmethod
    def setUpClass(cls):
        cls.client = SYSTEM.client(login=True, timeout=30)
        cls.client.ok("CREATE nul")

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def append_binary(self, data):
        tag = self.client.tag()
        self.client.send(b"%s APPEND nul ~{%d}\r\n" % (tag.encode(), len(data)))
        self.client.expect_continuation()
        self.client.send(data + b"\r\n")
        _, tagged = self.client.read_tagged(tag)
        assert_tagged(self, tagged, tag, "OK")
        match = re.search(rb"\[APPENDUID \d+ (\d+)\]", tagged)
        return int(match.group(1))

    def server_bytes(self):
        return b"".join(data for direction, data in self.client.transcript if direction == "S")

    def test_small_message_with_nul(self):
        data = (b"Subject: nul\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Transfer-Encoding: binary\r\n\r\nab\x00cd\r\n")
        uid = self.append_binary(data)
        self.client.ok("SELECT nul")
        self.client.transcript.clear()
        for item in ("BODY.PEEK[]", "RFC822", "BODY.PEEK[TEXT]", "BODY.PEEK[1]"):
            with self.subTest(item=item):
                tag = self.client.tag()
                untagged, tagged = self.client.command("UID FETCH %d (%s)" % (uid, item), tag=tag)
                self.assertRegex(tagged, rb"^\S+ NO \[UNKNOWN-CTE\] .*BINARY")
                self.assertTrue(any(b" NIL" in line for line in untagged), untagged)
        self.assertNotIn(b"\x00", self.server_bytes())
        # The header has no NUL: fine as BODY[HEADER].
        lines = self.client.ok("UID FETCH %d (BODY.PEEK[HEADER])" % uid)
        self.assertIn(b"Subject: nul", lines[0])
        # BINARY[] carries it as literal8, byte for byte.
        lines = self.client.ok("UID FETCH %d (BINARY.PEEK[])" % uid)
        self.assertIn(b"BINARY[] ~{%d}\r\n" % len(data) + data, lines[0])

    def test_nul_beyond_the_first_chunk(self):
        # The store sends sections in 256 KiB chunks; the literal's size is on the
        # wire before a NUL in a later chunk shows up. The NUL is replaced, the
        # response stays well-formed, and the command still ends NO [UNKNOWN-CTE].
        body = b"y" * (300 * 1024) + b"\x00tail\r\n"
        data = b"Subject: big nul\r\n\r\n" + body
        uid = self.append_binary(data)
        self.client.ok("SELECT nul")
        self.client.transcript.clear()
        tag = self.client.tag()
        untagged, tagged = self.client.command("UID FETCH %d (BODY.PEEK[])" % uid, tag=tag)
        self.assertRegex(tagged, rb"^\S+ NO \[UNKNOWN-CTE\] ")
        self.assertIn(b"BODY[] {%d}\r\n" % len(data), untagged[0])
        self.assertNotIn(b"\x00", self.server_bytes())
        self.assertTrue(untagged[0].endswith(b"\x80tail\r\n)"), untagged[0][-20:])
        self.assertTrue(self.client.alive())


    def test_nul_in_the_first_chunk_of_a_large_section(self):
        # A section over 256 KiB comes from the store in several chunks. When the
        # first one holds NUL the item is NIL, and the later chunks of that section
        # must be dropped, not taken for the next item (which ended the whole FETCH
        # with an internal error and lost the other message's items).
        self.client.ok("CREATE nulbig")
        big = (b"Subject: big nul first\r\n\r\nab\x00cd\r\n" + b"z" * (300 * 1024) + b"\r\n")
        tag = self.client.tag()
        self.client.send(b"%s APPEND nulbig ~{%d}\r\n" % (tag.encode(), len(big)))
        self.client.expect_continuation()
        self.client.send(big + b"\r\n")
        _, tagged = self.client.read_tagged(tag)
        assert_tagged(self, tagged, tag, "OK")
        plain = b"Subject: plain\r\n\r\nno nul here\r\n"
        self.client.ok("APPEND nulbig {%d+}\r\n%s" % (len(plain), plain.decode()))
        self.client.ok("SELECT nulbig")
        self.client.transcript.clear()
        tag = self.client.tag()
        untagged, tagged = self.client.command("FETCH 1:2 (BODY[] FLAGS)", tag=tag)
        self.assertRegex(tagged, rb"^\S+ NO \[UNKNOWN-CTE\] .*BINARY")
        first = [line for line in untagged if line.startswith(b"* 1 FETCH (BODY[] ")]
        second = [line for line in untagged if line.startswith(b"* 2 FETCH (BODY[] ")]
        self.assertEqual(len(first), 1, untagged)
        self.assertTrue(first[0].startswith(b"* 1 FETCH (BODY[] NIL FLAGS ("), first[0][:80])
        self.assertEqual(len(second), 1, untagged)
        self.assertIn(b"BODY[] {%d}\r\n" % len(plain) + plain + b" FLAGS (", second[0])
        self.assertNotIn(b"\x00", self.server_bytes())
        # RFC 3501 §6.4.5: \Seen follows reading the data. The refused message was
        # not read, so its \Seen is taken back; the delivered one keeps it.
        flags = self.client.ok("FETCH 1:2 (FLAGS)")
        self.assertTrue(any(line.startswith(b"* 1 FETCH (FLAGS (") and b"\\Seen" not in line
                            for line in flags), flags)
        self.assertTrue(any(line.startswith(b"* 2 FETCH (FLAGS (") and b"\\Seen" in line
                            for line in flags), flags)
        # The whole message is still there for BINARY[].
        lines = self.client.ok("FETCH 1 (BINARY.PEEK[])")
        self.assertIn(b"BINARY[] ~{%d}\r\n" % len(big) + big, lines[0])
        # RFC 3516 §4.3: BINARY[] data without NUL is an ordinary literal.
        lines = self.client.ok("FETCH 2 (BINARY.PEEK[])")
        self.assertIn(b"BINARY[] {%d}\r\n" % len(plain) + plain, lines[0])
        self.assertTrue(self.client.alive())
        SYSTEM.assert_canary_alive()


class LoginAfterLoginTest(unittest.TestCase):
    def test_login_when_authenticated_says_so(self):
        c = SYSTEM.client(login=True)
        try:
            # RFC 3501 §6.2.3: LOGIN is valid only in the Not Authenticated state.
            for state in ("authenticated", "selected"):
                for command in ('LOGIN "%s" "%s"' % (SYSTEM.user, SYSTEM.password),
                                "AUTHENTICATE PLAIN", "STARTTLS"):
                    with self.subTest(state=state, command=command):
                        tag = c.tag()
                        _, tagged = c.command(command, tag=tag)
                        self.assertRegex(
                            tagged, rb"^\S+ BAD \S+ is not allowed: the session is already "
                                    rb"authenticated")
                c.ok("SELECT INBOX")
            # Commands that need a selected mailbox still say that.
            c.ok("UNSELECT")
            _, tagged = c.command("FETCH 1 (FLAGS)")
            self.assertIn(b"without a selected mailbox", tagged)
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main()
