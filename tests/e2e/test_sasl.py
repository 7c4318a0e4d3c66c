"""SASL mechanisms of AUTHENTICATE from Python's imaplib (authobject callbacks) and
a raw socket, against the real mailbox service and gateway: LOGIN (off by default),
and their throttling, which is the one LOGIN and PLAIN go through."""

import base64
import imaplib
import os
import re
import ssl
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from raw_client import RawClient  # noqa: E402

SYSTEM = None
GATEWAY = None        # defaults: AUTH=LOGIN off
LOGIN_GATEWAY = None  # --auth-login=true

THROTTLED = b"Too many failed logins"


def setUpModule():
    global SYSTEM, GATEWAY, LOGIN_GATEWAY
    SYSTEM = harness.System("sasl")
    unittest.addModuleCleanup(SYSTEM.stop)
    # One free failure per user and client, so a few failures show the throttle; the
    # address allowance is high, as every test connects from 127.0.0.1.
    SYSTEM.start_service("--auth-user-free-failures=1", "--auth-ip-free-failures=100000")
    GATEWAY = SYSTEM.start_gateway("--gateway-id=sasl-1")
    LOGIN_GATEWAY = SYSTEM.start_gateway("--gateway-id=sasl-2", "--auth-login=true")


def context(**kwargs):
    ctx = ssl.create_default_context(cafile=SYSTEM.cert)
    for key, value in kwargs.items():
        setattr(ctx, key, value)
    return ctx


def connect(gateway, ctx=None):
    return imaplib.IMAP4_SSL("127.0.0.1", gateway.imaps_port, ssl_context=ctx or context(),
                             timeout=15)


def auth_mechanisms(capabilities):
    return sorted(c for c in capabilities if c.startswith("AUTH="))


class LoginAuthObject:
    """draft-murchison-sasl-login: answers "Username:" and "Password:"."""

    def __init__(self, user, password):
        self.answers = {b"Username:": user.encode(), b"Password:": password.encode()}
        self.challenges = []

    def __call__(self, challenge):
        self.challenges.append(challenge)
        return self.answers[challenge]


class Base(unittest.TestCase):
    def setUp(self):
        self.user, self.password = SYSTEM.new_user("sasl")
        self.clients = []

    def tearDown(self):
        for client in self.clients:
            try:
                client.logout()
            except Exception:
                pass
        for gateway in (GATEWAY, LOGIN_GATEWAY):
            self.assertTrue(gateway.alive(), "gateway died:\n" + gateway.log()[-3000:])

    def connect(self, gateway, ctx=None):
        imap = connect(gateway, ctx)
        self.clients.append(imap)
        return imap

    def raw(self, gateway, mode="tls"):
        port = gateway.imaps_port if mode == "tls" else gateway.imap_port
        client = RawClient(port, mode, cafile=SYSTEM.cert)
        self.addCleanup(client.close)
        return client

    def until_throttled(self, attempt, limit=10):
        """Calls attempt() (one failed authentication, returning the tagged line or the
        imaplib error text as bytes) until the service's throttle answers; returns the
        number of attempts. With one free failure and doubling delays from 1 s, a
        client retrying at once is throttled within a few attempts."""
        for count in range(1, limit + 1):
            answer = attempt()
            self.assertIn(b"AUTHENTICATIONFAILED", answer)
            if THROTTLED in answer:
                return count
        self.fail("never throttled after %d failed attempts" % limit)


class AuthLoginTest(Base):
    def test_off_by_default(self):
        imap = self.connect(GATEWAY)
        self.assertEqual(auth_mechanisms(imap.capabilities), ["AUTH=PLAIN"])
        with self.assertRaises(imap.error) as raised:
            imap.authenticate("LOGIN", LoginAuthObject(self.user, self.password))
        self.assertIn("CANNOT", str(raised.exception))
        self.assertIn("offers PLAIN", str(raised.exception))
        self.assertEqual(imap.state, "NONAUTH")

    def test_login_mechanism(self):
        imap = self.connect(LOGIN_GATEWAY)
        self.assertEqual(auth_mechanisms(imap.capabilities), ["AUTH=LOGIN", "AUTH=PLAIN"])
        auth = LoginAuthObject(self.user, self.password)
        typ, data = imap.authenticate("LOGIN", auth)
        self.assertEqual(typ, "OK", data)
        self.assertEqual(auth.challenges, [b"Username:", b"Password:"])
        self.assertEqual(imap.state, "AUTH")
        typ, _ = imap.select("INBOX")
        self.assertEqual(typ, "OK")

    def test_exact_exchange_and_initial_response(self):
        client = self.raw(LOGIN_GATEWAY)
        client.send(b"l1 AUTHENTICATE LOGIN\r\n")
        self.assertEqual(client.read_line(), b"+ " + base64.b64encode(b"Username:"))
        client.send(base64.b64encode(self.user.encode()) + b"\r\n")
        self.assertEqual(client.read_line(), b"+ " + base64.b64encode(b"Password:"))
        client.send(base64.b64encode(self.password.encode()) + b"\r\n")
        _, tagged = client.read_tagged("l1")
        self.assertTrue(tagged.startswith(b"l1 OK [CAPABILITY IMAP4rev1"), tagged)
        self.assertNotIn(b"AUTH=LOGIN", tagged)
        # SASL-IR (RFC 4959): the user name rides on the command.
        client = self.raw(LOGIN_GATEWAY)
        client.send(b"l2 AUTHENTICATE LOGIN " + base64.b64encode(self.user.encode()) + b"\r\n")
        self.assertEqual(client.read_line(), b"+ " + base64.b64encode(b"Password:"))
        client.send(base64.b64encode(self.password.encode()) + b"\r\n")
        _, tagged = client.read_tagged("l2")
        self.assertTrue(tagged.startswith(b"l2 OK"), tagged)

    def test_cancel_and_bad_base64(self):
        client = self.raw(LOGIN_GATEWAY)
        client.send(b"c1 AUTHENTICATE LOGIN\r\n")
        client.read_line()
        client.send(b"*\r\n")
        _, tagged = client.read_tagged("c1")
        self.assertTrue(tagged.startswith(b"c1 BAD AUTHENTICATE cancelled"), tagged)
        client.send(b"c2 AUTHENTICATE LOGIN\r\n")
        client.read_line()
        client.send(b"not base64!\r\n")
        _, tagged = client.read_tagged("c2")
        self.assertTrue(tagged.startswith(b"c2 BAD The SASL response is not valid base64"),
                        tagged)

    def test_not_offered_without_tls(self):
        # Like PLAIN: not on the plaintext port before STARTTLS.
        client = self.raw(LOGIN_GATEWAY, mode="plain")
        caps = client.ok("CAPABILITY")[0].split()
        self.assertNotIn(b"AUTH=LOGIN", caps)
        self.assertIn(b"LOGINDISABLED", caps)
        _, tagged = client.command("AUTHENTICATE LOGIN", tag="p1")
        self.assertTrue(tagged.startswith(b"p1 NO [PRIVACYREQUIRED]"), tagged)
        client.starttls()
        caps = client.ok("CAPABILITY")[0].split()
        self.assertIn(b"AUTH=LOGIN", caps)

    def test_wrong_password_is_throttled(self):
        def attempt():
            imap = connect(LOGIN_GATEWAY)
            try:
                imap.authenticate("LOGIN", LoginAuthObject(self.user, "wrong-pw"))
            except imap.error as error:
                return str(error).encode()
            finally:
                imap.shutdown()
            self.fail("a wrong password logged in")

        self.until_throttled(attempt)
        # The throttle holds the (user, address) pair whatever the mechanism: the
        # right password by PLAIN or LOGIN is refused while it waits.
        imap = self.connect(LOGIN_GATEWAY)
        with self.assertRaises(imap.error) as raised:
            imap.login(self.user, self.password)
        self.assertIn("Too many failed logins", str(raised.exception))

    def test_failures_end_the_connection(self):
        # The gateway's own count (--max-auth-failures, 4) holds for LOGIN too.
        other, _ = SYSTEM.new_user("sasl-bye")
        client = self.raw(LOGIN_GATEWAY)
        for i in range(4):
            tag = "f%d" % i
            client.send(b"%s AUTHENTICATE LOGIN %s\r\n"
                        % (tag.encode(), base64.b64encode(other.encode())))
            client.read_line()
            client.send(base64.b64encode(b"wrong-%d" % i) + b"\r\n")
            _, tagged = client.read_tagged(tag)
            self.assertTrue(tagged.startswith(tag.encode() + b" NO [AUTHENTICATIONFAILED]"),
                            tagged)
        self.assertEqual(client.read_line(), b"* BYE Too many failed authentication attempts")


if __name__ == "__main__":
    unittest.main()
