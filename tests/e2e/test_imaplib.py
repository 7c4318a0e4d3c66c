"""End-to-end tests with Python's imaplib against the real gateway and mailbox service."""

import base64
import imaplib
import os
import re
import ssl
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SYSTEM = None
GATEWAY = None

# ID (RFC 2971) is not in imaplib's command table.
imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))

PLAIN_MESSAGE = (b"From: Alice <alice@example.org>\r\n"
                 b"To: Bob <bob@example.org>\r\n"
                 b"Subject: Hello plain\r\n"
                 b"Date: Mon, 5 Jan 2026 10:00:00 +0000\r\n"
                 b"Message-ID: <plain@example.org>\r\n"
                 b"\r\n"
                 b"Hello Bob, this is the body.\r\n")

MULTIPART_MESSAGE = (b"From: Carol <carol@example.org>\r\n"
                     b"To: Dave <dave@example.org>\r\n"
                     b"Subject: Multipart report\r\n"
                     b"Date: Tue, 6 Jan 2026 11:30:00 +0100\r\n"
                     b"MIME-Version: 1.0\r\n"
                     b"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"
                     b"\r\n"
                     b"--XYZ\r\n"
                     b"Content-Type: text/plain; charset=us-ascii\r\n"
                     b"\r\n"
                     b"0123456789abcdefghij first part\r\n"
                     b"--XYZ\r\n"
                     b"Content-Type: application/octet-stream\r\n"
                     b"Content-Transfer-Encoding: base64\r\n"
                     b"\r\n"
                     b"AAECAwQFBgc=\r\n"
                     b"--XYZ--\r\n")


def setUpModule():
    global SYSTEM, GATEWAY
    SYSTEM = harness.System("imaplib")
    # Runs even if the rest of setUpModule fails (tearDownModule would not).
    unittest.addModuleCleanup(SYSTEM.stop)
    SYSTEM.start_service()
    GATEWAY = SYSTEM.start_gateway()


def context():
    return ssl.create_default_context(cafile=SYSTEM.cert)


def connect_tls():
    return imaplib.IMAP4_SSL("127.0.0.1", GATEWAY.imaps_port, ssl_context=context(), timeout=15)


def connect_plain():
    return imaplib.IMAP4("127.0.0.1", GATEWAY.imap_port, timeout=15)


def ok(result):
    typ, data = result
    if typ != "OK":
        raise AssertionError("expected OK, got %s %r" % (typ, data))
    return data


def run(imap, name, *args):
    """Sends a command whatever imaplib thinks of the state; returns (typ, data) and
    turns imaplib's exception for BAD into ("BAD", [message])."""
    saved = imap.state
    imap.state = imaplib.Commands[name][0]
    try:
        return imap._simple_command(name, *args)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as error:
        if " BAD " in str(error) or "BAD" in str(error).split():
            return "BAD", [str(error).encode()]
        raise
    finally:
        imap.state = saved


def flatten(data):
    """imaplib FETCH data -> one bytes blob."""
    out = b""
    for item in data:
        if isinstance(item, tuple):
            out += b"".join(item)
        elif item is not None:
            out += item
    return out


class ImaplibTest(unittest.TestCase):
    def setUp(self):
        self.user, self.password = SYSTEM.new_user("py")
        self.imap = connect_tls()
        ok(self.imap.login(self.user, self.password))

    def tearDown(self):
        try:
            self.imap.logout()
        except Exception:
            pass
        self.assertTrue(GATEWAY.alive(), "gateway process died")

    def append(self, mailbox, message, flags=None, date=None):
        typ, data = self.imap.append(mailbox, flags, date, message)
        self.assertEqual(typ, "OK", data)
        return data

    def test_capability(self):
        typ, data = self.imap.capability()
        self.assertEqual(typ, "OK")
        caps = data[0].split()
        for cap in (b"IMAP4rev1", b"IDLE", b"UIDPLUS", b"MOVE", b"NAMESPACE", b"ID",
                    b"ENABLE", b"CONDSTORE", b"LITERAL+", b"UNSELECT", b"BINARY"):
            self.assertIn(cap, caps)
        self.assertNotIn(b"STARTTLS", caps)
        self.assertNotIn(b"LOGINDISABLED", caps)

    def test_mailbox_management(self):
        ok(self.imap.create("Projects"))
        ok(self.imap.create("Projects/Alpha"))
        ok(self.imap.create("Caf&AOk-"))  # "Café" in modified UTF-7
        listing = b"\n".join(ok(self.imap.list()))
        self.assertIn(b"INBOX", listing)
        self.assertRegex(listing, rb'\(.*\) "/" "?Projects/Alpha"?')
        self.assertIn(b"Caf&AOk-", listing)
        # Pattern matching: % does not cross the delimiter.
        top = b"\n".join(ok(self.imap.list('""', "%")))
        self.assertIn(b"Projects", top)
        self.assertNotIn(b"Projects/Alpha", top)
        # Creating an existing mailbox fails with a code.
        typ, data = self.imap.create("Projects")
        self.assertEqual(typ, "NO")
        self.assertIn(b"ALREADYEXISTS", data[0])

        ok(self.imap.subscribe("Projects/Alpha"))
        lsub = b"\n".join(x for x in ok(self.imap.lsub()) if x)
        self.assertIn(b"Projects/Alpha", lsub)
        ok(self.imap.unsubscribe("Projects/Alpha"))
        lsub = b"\n".join(x for x in ok(self.imap.lsub()) if x)
        self.assertNotIn(b"Projects/Alpha", lsub)

        ok(self.imap.rename("Projects/Alpha", "Projects/Beta"))
        listing = b"\n".join(ok(self.imap.list()))
        self.assertIn(b"Projects/Beta", listing)
        self.assertNotIn(b"Projects/Alpha", listing)

        self.append("Projects/Beta", PLAIN_MESSAGE, r"(\Seen)")
        self.append("Projects/Beta", PLAIN_MESSAGE)
        status = ok(self.imap.status("Projects/Beta", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT)"))
        self.assertRegex(status[0], rb"MESSAGES 2")
        self.assertRegex(status[0], rb"UNSEEN 1")
        self.assertRegex(status[0], rb"UIDNEXT 3")
        self.assertRegex(status[0], rb"UIDVALIDITY \d+")

        ok(self.imap.delete("Projects/Beta"))
        listing = b"\n".join(ok(self.imap.list()))
        self.assertNotIn(b"Projects/Beta", listing)
        typ, data = self.imap.delete("Nope")
        self.assertEqual(typ, "NO")
        self.assertIn(b"NONEXISTENT", data[0])
        typ, data = self.imap.select("Nope")
        self.assertEqual(typ, "NO")

    def test_append_select_fetch(self):
        data = self.append("INBOX", PLAIN_MESSAGE, r"(\Flagged $Label1)",
                           '"05-Jan-2026 10:00:00 +0000"')
        self.assertRegex(data[0], rb"\[APPENDUID \d+ 1\]")
        self.append("INBOX", MULTIPART_MESSAGE)

        typ, data = self.imap.select("INBOX")
        self.assertEqual(typ, "OK")
        self.assertEqual(data[0], b"2")
        self.assertTrue(self.imap.response("UIDVALIDITY")[1][0])

        fetched = flatten(ok(self.imap.fetch("1", "(FLAGS INTERNALDATE RFC822.SIZE)")))
        self.assertIn(b"\\Flagged", fetched)
        self.assertIn(b"$Label1", fetched)
        self.assertIn(b'INTERNALDATE " 5-Jan-2026 10:00:00 +0000"', fetched)
        self.assertIn(b"RFC822.SIZE %d" % len(PLAIN_MESSAGE), fetched)

        envelope = flatten(ok(self.imap.fetch("1", "(ENVELOPE)")))
        self.assertIn(b'"Hello plain"', envelope)
        self.assertIn(b'"Mon, 5 Jan 2026 10:00:00 +0000"', envelope)
        self.assertIn(b'"alice" "example.org"', envelope)
        self.assertIn(b'"<plain@example.org>"', envelope)

        structure = flatten(ok(self.imap.fetch("2", "(BODYSTRUCTURE)")))
        self.assertRegex(structure, rb'(?i)"mixed"')
        self.assertRegex(structure, rb'(?i)"text" "plain"')
        self.assertRegex(structure, rb'(?i)"application" "octet-stream"')
        self.assertRegex(structure, rb'(?i)"boundary" "XYZ"')

        # BODY.PEEK does not set \Seen; BODY[] does.
        data = ok(self.imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (Subject)])"))
        self.assertEqual(data[0][1], b"Subject: Hello plain\r\n\r\n")
        self.assertNotIn(b"\\Seen", flatten(ok(self.imap.fetch("1", "(FLAGS)"))))
        data = ok(self.imap.fetch("1", "(BODY[])"))
        self.assertEqual(data[0][1], PLAIN_MESSAGE)
        self.assertIn(b"\\Seen", flatten(ok(self.imap.fetch("1", "(FLAGS)"))))

        data = ok(self.imap.fetch("2", "(BODY.PEEK[1]<0.10>)"))
        self.assertIn(b"BODY[1]<0>", data[0][0])
        self.assertEqual(data[0][1], b"0123456789")

        data = ok(self.imap.fetch("2", "(BINARY.PEEK[2])"))
        self.assertEqual(data[0][1], bytes(range(8)))
        data = ok(self.imap.fetch("2", "(BINARY.SIZE[2])"))
        self.assertIn(b"BINARY.SIZE[2] 8", flatten(data))

        uid_data = flatten(ok(self.imap.uid("FETCH", "1:*", "(UID FLAGS)")))
        self.assertIn(b"UID 1", uid_data)
        self.assertIn(b"UID 2", uid_data)

        # EXAMINE is read-only.
        typ, data = self.imap.select("INBOX", readonly=True)
        self.assertEqual(typ, "OK")
        typ, data = self.imap.store("1", "+FLAGS", r"(\Deleted)")
        self.assertEqual(typ, "NO")

    def test_store_and_search(self):
        for i in range(5):
            msg = PLAIN_MESSAGE.replace(b"Hello plain", b"Message %d" % i)
            self.append("INBOX", msg)
        ok(self.imap.select("INBOX"))
        data = flatten(ok(self.imap.store("1:2", "+FLAGS", r"(\Flagged)")))
        self.assertIn(b"\\Flagged", data)
        data = flatten(ok(self.imap.store("2", "-FLAGS", r"(\Flagged)")))
        self.assertNotIn(b"\\Flagged", data)
        typ, data = self.imap.store("3", "FLAGS.SILENT", r"(\Seen $Work)")
        self.assertEqual(typ, "OK")
        self.assertFalse(any(b"FETCH" in (d or b"") for d in data if isinstance(d, bytes)))
        self.assertIn(b"$Work", flatten(ok(self.imap.fetch("3", "(FLAGS)"))))

        self.assertEqual(ok(self.imap.search(None, "FLAGGED"))[0], b"1")
        self.assertEqual(ok(self.imap.search(None, "UNFLAGGED"))[0].split(),
                         [b"2", b"3", b"4", b"5"])
        self.assertEqual(ok(self.imap.search(None, "SEEN"))[0], b"3")
        self.assertEqual(ok(self.imap.search(None, 'SUBJECT "Message 4"'))[0], b"5")
        self.assertEqual(ok(self.imap.search(None, "KEYWORD", "$Work"))[0], b"3")
        self.assertEqual(ok(self.imap.search(None, "OR", "FLAGGED", "SEEN"))[0].split(),
                         [b"1", b"3"])
        self.assertEqual(ok(self.imap.search(None, "NOT", "SEEN", "2:4"))[0].split(),
                         [b"2", b"4"])
        self.assertEqual(ok(self.imap.search(None, 'FROM "alice"', "SINCE", "1-Jan-2020"))[0]
                         .split(), [b"1", b"2", b"3", b"4", b"5"])
        self.assertEqual(ok(self.imap.search(None, "BODY", "body"))[0].split(),
                         [b"1", b"2", b"3", b"4", b"5"])
        self.assertEqual(ok(self.imap.search(None, "LARGER", "100000"))[0], b"")
        self.assertEqual(ok(self.imap.search("UTF-8", "ALL"))[0].split(),
                         [b"1", b"2", b"3", b"4", b"5"])
        self.assertEqual(ok(self.imap.uid("SEARCH", "UID", "2:3"))[0].split(), [b"2", b"3"])
        self.assertEqual(ok(self.imap.uid("SEARCH", "FLAGGED"))[0], b"1")
        typ, data = run(self.imap, "SEARCH", "FROBNICATE")
        self.assertEqual(typ, "BAD")
        typ, data = self.imap.search("KOI8-R", "ALL")
        self.assertEqual(typ, "NO")
        self.assertIn(b"BADCHARSET", data[0])

    def test_copy_move_expunge(self):
        for i in range(4):
            self.append("INBOX", PLAIN_MESSAGE.replace(b"Hello plain", b"M%d" % i))
        ok(self.imap.create("Archive"))
        ok(self.imap.select("INBOX"))
        typ, data = self.imap.copy("1:2", "Archive")
        self.assertEqual(typ, "OK", data)
        self.assertRegex(data[0], rb"\[COPYUID \d+ 1:2 1:2\]")
        typ, data = self.imap.copy("1", "Missing")
        self.assertEqual(typ, "NO")
        self.assertIn(b"TRYCREATE", data[0])

        typ, data = self.imap._simple_command("MOVE", "3", "Archive")
        self.assertEqual(typ, "OK", data)
        self.assertIn(b"3", self.imap.untagged_responses.get("EXPUNGE", [b""]))
        ok(self.imap.select("INBOX"))
        self.assertEqual(ok(self.imap.search(None, "ALL"))[0].split(), [b"1", b"2", b"3"])
        archive = ok(self.imap.status("Archive", "(MESSAGES)"))
        self.assertIn(b"MESSAGES 3", archive[0])

        ok(self.imap.store("1", "+FLAGS", r"(\Deleted)"))
        typ, data = self.imap.expunge()
        self.assertEqual(typ, "OK")
        self.assertEqual(data, [b"1"])
        # UID EXPUNGE removes only the UIDs given, even if others are \Deleted.
        ok(self.imap.store("1:2", "+FLAGS", r"(\Deleted)"))
        uids = ok(self.imap.uid("SEARCH", "DELETED"))[0].split()
        self.assertEqual(len(uids), 2)
        typ, data = self.imap.uid("EXPUNGE", uids[1].decode())
        self.assertEqual(typ, "OK", data)
        self.assertEqual(ok(self.imap.uid("SEARCH", "ALL"))[0].split(), [uids[0]])
        # CLOSE expunges the rest silently.
        ok(self.imap.close())
        self.assertIn(b"MESSAGES 0", ok(self.imap.status("INBOX", "(MESSAGES)"))[0])
        # UNSELECT does not expunge.
        self.append("INBOX", PLAIN_MESSAGE)
        ok(self.imap.select("INBOX"))
        ok(self.imap.store("1", "+FLAGS", r"(\Deleted)"))
        ok(self.imap.unselect())
        self.assertIn(b"MESSAGES 1", ok(self.imap.status("INBOX", "(MESSAGES)"))[0])
        typ, _ = run(self.imap, "FETCH", "1", "(FLAGS)")
        self.assertEqual(typ, "BAD")  # no mailbox selected

    def test_misc_commands(self):
        ok(self.imap.noop())
        # ENABLE belongs to the authenticated state (RFC 5161 §3.1).
        typ, data = self.imap.enable("CONDSTORE")
        self.assertEqual(typ, "OK", data)
        self.assertEqual(self.imap.response("ENABLED")[1], [b"CONDSTORE"])
        ok(self.imap.select("INBOX"))
        ok(self.imap.check())
        namespace = ok(self.imap.namespace())
        self.assertIn(b'(("" "/"))', namespace[0])
        typ, data = self.imap._simple_command("ID", '("name" "e2e-imaplib" "version" "1")')
        self.assertEqual(typ, "OK", data)
        typ, data = self.imap._untagged_response(typ, data, "ID")
        self.assertIn(b'"name"', data[0])
        typ, data = self.imap._simple_command("ID", "NIL")
        self.assertEqual(typ, "OK")
        self.append("INBOX", PLAIN_MESSAGE)
        ok(self.imap.noop())  # RFC 3501 §6.3.11: the client may need NOOP to see it
        fetched = flatten(ok(self.imap.fetch("1", "(FLAGS MODSEQ)")))
        self.assertRegex(fetched, rb"MODSEQ \(\d+\)")
        typ, data = self.imap.logout()
        self.assertEqual(typ, "BYE")

    def test_starttls_then_login(self):
        imap = connect_plain()
        try:
            self.assertIn("STARTTLS", imap.capabilities)
            self.assertIn("LOGINDISABLED", imap.capabilities)
            ok(imap.starttls(ssl_context=context()))
            self.assertNotIn("STARTTLS", imap.capabilities)
            self.assertNotIn("LOGINDISABLED", imap.capabilities)
            self.assertIn("AUTH=PLAIN", imap.capabilities)
            ok(imap.login(self.user, self.password))
            ok(imap.select("INBOX"))
        finally:
            imap.logout()

    def test_login_refused_before_starttls(self):
        imap = connect_plain()
        try:
            # imaplib itself refuses LOGIN when LOGINDISABLED is advertised; send it anyway.
            typ, data = imap._simple_command("LOGIN", self.user, imap._quote(self.password))
            self.assertEqual(typ, "NO")
            self.assertIn(b"PRIVACYREQUIRED", data[0])
            typ, data = imap._simple_command("AUTHENTICATE", "PLAIN", base64.b64encode(
                b"\0" + self.user.encode() + b"\0" + self.password.encode()).decode())
            self.assertEqual(typ, "NO")
            self.assertIn(b"PRIVACYREQUIRED", data[0])
            typ, data = run(imap, "SELECT", "INBOX")
            self.assertEqual(typ, "BAD")
        finally:
            imap.logout()

    def test_wrong_password(self):
        imap = connect_tls()
        try:
            for attempt in range(3):
                with self.assertRaises(imaplib.IMAP4.error) as caught:
                    imap.login(self.user, "wrong")
                self.assertIn("AUTHENTICATIONFAILED", str(caught.exception))
            with self.assertRaises(imaplib.IMAP4.error) as caught:
                imap.login(self.user, "wrong")
            self.assertIn("AUTHENTICATIONFAILED", str(caught.exception))
            # The fourth failure ends the connection with BYE.
            with self.assertRaises(imaplib.IMAP4.abort):
                imap.noop()
        finally:
            try:
                imap.shutdown()
            except Exception:
                pass
        # A new connection with the right password still works.
        again = connect_tls()
        ok(again.login(self.user, self.password))
        again.logout()
        unknown = connect_tls()
        try:
            with self.assertRaises(imaplib.IMAP4.error):
                unknown.login("no-such-user", "x")
        finally:
            unknown.shutdown()

    def test_authenticate_plain(self):
        def plain(_challenge):
            return b"\0" + self.user.encode() + b"\0" + self.password.encode()

        # Without SASL-IR: imaplib waits for the "+" challenge.
        imap = connect_tls()
        imap.capabilities = tuple(c for c in imap.capabilities if c != "SASL-IR")
        typ, data = imap.authenticate("PLAIN", plain)
        self.assertEqual(typ, "OK", data)
        self.assertEqual(imap.state, "AUTH")
        imap.logout()

        # With SASL-IR (RFC 4959): the initial response on the command line.
        imap = connect_tls()
        self.assertIn("SASL-IR", imap.capabilities)
        initial = base64.b64encode(plain(None)).decode()
        typ, data = imap._simple_command("AUTHENTICATE", "PLAIN", initial)
        self.assertEqual(typ, "OK", data)
        imap.state = "AUTH"
        ok(imap.select("INBOX"))
        imap.logout()

        imap = connect_tls()
        bad = base64.b64encode(b"\0" + self.user.encode() + b"\0wrong").decode()
        typ, data = imap._simple_command("AUTHENTICATE", "PLAIN", bad)
        self.assertEqual(typ, "NO")
        self.assertIn(b"AUTHENTICATIONFAILED", data[0])
        typ, data = run(imap, "AUTHENTICATE", "PLAIN", "!!notbase64!!")
        self.assertEqual(typ, "BAD")
        imap.logout()


if __name__ == "__main__":
    unittest.main()
