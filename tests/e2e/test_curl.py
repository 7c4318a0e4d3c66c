"""End-to-end tests with curl's IMAP client (imaps:// and imap:// with STARTTLS)."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from raw_client import RawClient  # noqa: E402

CURL = "/usr/bin/curl"
SYSTEM = None
GATEWAY = None

MESSAGE = (b"From: Alice <alice@example.org>\r\n"
           b"To: Bob <bob@example.org>\r\n"
           b"Subject: curl %d\r\n"
           b"Date: Mon, 5 Jan 2026 10:00:00 +0000\r\n"
           b"\r\n"
           b"Body %d for curl.\r\n")


def setUpModule():
    global SYSTEM, GATEWAY
    SYSTEM = harness.System("curl")
    # Runs even if the rest of setUpModule fails (tearDownModule would not).
    unittest.addModuleCleanup(SYSTEM.stop)
    SYSTEM.start_service()
    GATEWAY = SYSTEM.start_gateway()


class CurlTest(unittest.TestCase):
    def setUp(self):
        self.user, self.password = SYSTEM.new_user("curl")
        with RawClient(GATEWAY.imaps_port, "tls", cafile=SYSTEM.cert) as client:
            client.login(self.user, self.password)
            client.ok("CREATE Work")
            for i in (1, 2):
                message = MESSAGE % (i, i)
                client.send(b"a%d APPEND INBOX {%d+}\r\n%s\r\n" % (i, len(message), message))
                _, tagged = client.read_tagged("a%d" % i)
                self.assertIn(b" OK ", tagged)

    def tearDown(self):
        self.assertTrue(GATEWAY.alive())

    def url(self, path="", scheme="imaps"):
        port = GATEWAY.imaps_port if scheme == "imaps" else GATEWAY.imap_port
        return "%s://127.0.0.1:%d/%s" % (scheme, port, path)

    def curl(self, *args, user=None, check=True):
        user = user or "%s:%s" % (self.user, self.password)
        command = [CURL, "--silent", "--show-error", "--max-time", "20", "--cacert", SYSTEM.cert,
                   "-u", user] + list(args)
        result = subprocess.run(command, capture_output=True, timeout=60)
        if check and result.returncode != 0:
            self.fail("%s exited %d: %s" % (" ".join(command), result.returncode,
                                             result.stderr.decode(errors="replace")))
        return result

    def test_list_mailboxes(self):
        out = self.curl(self.url()).stdout
        self.assertRegex(out, rb'\* LIST \([^)]*\) "/" "?INBOX"?')
        self.assertRegex(out, rb'\* LIST \([^)]*\) "/" "?Work"?')

    def test_fetch_by_uid(self):
        out = self.curl(self.url("INBOX;UID=2")).stdout
        self.assertEqual(out, MESSAGE % (2, 2))
        out = self.curl(self.url("INBOX;UID=1;SECTION=HEADER.FIELDS%20(SUBJECT)")).stdout
        self.assertIn(b"Subject: curl 1", out)
        result = self.curl(self.url("INBOX;UID=99"), check=False)
        self.assertNotEqual(result.returncode, 0)

    def test_fetch_by_index(self):
        out = self.curl(self.url("INBOX;MAILINDEX=1")).stdout
        self.assertEqual(out, MESSAGE % (1, 1))

    def test_search(self):
        out = self.curl(self.url("INBOX"), "-X", "SEARCH ALL").stdout
        self.assertIn(b"* SEARCH 1 2", out)
        out = self.curl(self.url("INBOX?SUBJECT%20%22curl%202%22")).stdout
        self.assertIn(b"* SEARCH 2", out)

    def test_custom_commands(self):
        out = self.curl(self.url(), "-X", "STATUS INBOX (MESSAGES UIDNEXT)").stdout
        self.assertIn(b"* STATUS INBOX (MESSAGES 2 UIDNEXT 3)", out)
        out = self.curl(self.url("INBOX"), "-X", "FETCH 1:* (FLAGS)").stdout
        self.assertRegex(out, rb"\* 1 FETCH \(FLAGS \([^)]*\)\)")

    def test_upload(self):
        path = os.path.join(SYSTEM.dir, "upload-%s.eml" % self.user)
        upload = MESSAGE % (3, 3)
        with open(path, "wb") as f:
            f.write(upload)
        self.curl(self.url("Work"), "-T", path)
        out = self.curl(self.url("Work;UID=1")).stdout
        self.assertEqual(out, upload)

    def test_starttls(self):
        out = self.curl(self.url("", scheme="imap"), "--ssl-reqd").stdout
        self.assertIn(b"INBOX", out)
        out = self.curl(self.url("INBOX;UID=1", scheme="imap"), "--ssl-reqd").stdout
        self.assertEqual(out, MESSAGE % (1, 1))

    def test_wrong_password(self):
        result = self.curl(self.url(), user="%s:wrong" % self.user, check=False)
        self.assertEqual(result.returncode, 67, result.stderr)  # CURLE_LOGIN_DENIED

    def test_plaintext_login_refused(self):
        # Without TLS the server advertises LOGINDISABLED and refuses LOGIN.
        result = self.curl(self.url("", scheme="imap"), check=False)
        self.assertNotEqual(result.returncode, 0)


if __name__ == "__main__":
    unittest.main()
