"""The classic attacks on an IMAP server, at sizes that run in seconds: oversized
literals, deep nesting, many pipelined commands, STARTTLS command injection and
cross-user access by name. Each gets a clear answer and leaves the canary working."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abuse_util  # noqa: E402

SYSTEM = None


def setUpModule():
    global SYSTEM
    SYSTEM = abuse_util.AbuseSystem("classic")
    unittest.addModuleCleanup(SYSTEM.stop)


class OversizedLiteralTest(unittest.TestCase):
    def test_a_literal_over_the_append_limit_is_refused_before_its_data(self):
        with SYSTEM.measure("oversized literal (APPEND {2 GiB})") as m:
            c = SYSTEM.client(login=True)
            tag = c.tag()
            c.send("%s APPEND INBOX {2147483648}\r\n" % tag)
            _, tagged = c.read_tagged(tag)
            self.assertTrue(tagged.startswith((tag + " NO").encode())
                            or tagged.startswith((tag + " BAD").encode()), tagged)
            # RFC 7889 / RFC 4469: the size limit is named, so a person can act on it.
            self.assertTrue(b"TOOBIG" in tagged or b"limit" in tagged.lower(), tagged)
            c.close()
            m.check(gateway_kib=16 * 1024, service_kib=16 * 1024)
        SYSTEM.assert_canary_alive()


class DeepNestingTest(unittest.TestCase):
    def test_deeply_nested_search_is_bad(self):
        with SYSTEM.measure("deep nesting (SEARCH 5,000 parentheses)") as m:
            c = SYSTEM.client(login=True)
            c.ok("SELECT INBOX")
            _, tagged = c.command("SEARCH " + "(" * 5000 + "ALL" + ")" * 5000)
            self.assertIn(b" BAD ", tagged)
            c.close()
            m.check(gateway_kib=16 * 1024, service_kib=16 * 1024)
        SYSTEM.assert_canary_alive()


class PipelineFloodTest(unittest.TestCase):
    def test_ten_thousand_pipelined_commands_are_all_answered_in_order(self):
        with SYSTEM.measure("10,000 pipelined NOOPs") as m:
            c = SYSTEM.client(login=True, timeout=120)
            c.send(b"".join(b"p%d NOOP\r\n" % i for i in range(10000)))
            for i in range(10000):
                _, tagged = c.read_tagged("p%d" % i)
                self.assertTrue(tagged.startswith(b"p%d OK" % i), tagged)
                if i % 1000 == 0:
                    m.sample()
            c.close()
            m.check(gateway_kib=32 * 1024, service_kib=16 * 1024)
        SYSTEM.assert_canary_alive()


class StartTlsInjectionTest(unittest.TestCase):
    def test_commands_pipelined_after_starttls_are_discarded(self):
        c = SYSTEM.client(mode="plain")
        tag = c.tag()
        # RFC 3501 §6.2.1 / RFC 7817: bytes after STARTTLS before the handshake must
        # not be executed inside the TLS session.
        c.send("%s STARTTLS\r\ninj1 CAPABILITY\r\n" % tag)
        _, tagged = c.read_tagged(tag)
        self.assertTrue(tagged.startswith((tag + " OK").encode()), tagged)
        c.upgrade()
        _, tagged = c.command("NOOP", tag="after")
        self.assertTrue(tagged.startswith(b"after OK"), tagged)
        self.assertNotIn(b"inj1", b"".join(d for _, d in c.transcript if _ == "S"))
        c.close()
        SYSTEM.assert_canary_alive()


class CrossUserTest(unittest.TestCase):
    def test_another_users_mailbox_cannot_be_reached_by_name(self):
        c = SYSTEM.client(login=True)
        for name in ("../%s/INBOX" % SYSTEM.canary_user, "/%s/INBOX" % SYSTEM.canary_user,
                     "~%s/INBOX" % SYSTEM.canary_user):
            _, tagged = c.command('SELECT "%s"' % name)
            self.assertFalse(tagged.split(b" ")[1] == b"OK", (name, tagged))
        c.close()
        SYSTEM.assert_canary_alive()


if __name__ == "__main__":
    unittest.main()
