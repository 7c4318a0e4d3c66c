"""SASL mechanisms of AUTHENTICATE from Python's imaplib (authobject callbacks) and
a raw socket, against the real mailbox service and gateway: LOGIN (off by default),
SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (with a SCRAM client written here), and their
throttling, which is the one LOGIN and PLAIN go through.

SCRAM-SHA-256-PLUS with tls-exporter (TLS 1.3) runs from scram_plus_client.cc, since
Python's ssl has no exporter: build it first with
`bazel build //tests/e2e:scram_plus_client`."""

import base64
import hashlib
import hmac
import imaplib
import os
import re
import ssl
import subprocess
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
    # Two free failures per user and client, so a few failures show the throttle; the
    # address allowance is high, as every test connects from 127.0.0.1.
    # The demo user is made by the service itself, without SCRAM keys: it stands for
    # a user from before SCRAM, who gets them at the next password login.
    SYSTEM.start_service("--auth-user-free-failures=2", "--auth-ip-free-failures=100000",
                         "--demo-user=legacy:legacy-pw")
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


def saslname(name):
    # RFC 5802 §7: "," and "=" are escaped in names.
    return name.encode().replace(b"=", b"=3D").replace(b",", b"=2C")


class ScramClient:
    """An RFC 5802 client with SHA-256 (RFC 7677), as an imaplib authobject.

    cbind: b"n" (no binding), b"y" (client supports binding, thinks the server does
    not) or a channel-binding type (b"tls-unique": -PLUS) with `binding`, its data.
    tamper: flips a bit of the client proof."""

    def __init__(self, user, password, cbind=b"n", binding=b"", tamper=False):
        self.user, self.password = user, password
        self.gs2 = (b"p=" + cbind if cbind not in (b"n", b"y") else cbind) + b",,"
        self.binding = binding
        self.tamper = tamper
        self.nonce = base64.b64encode(os.urandom(18))
        self.challenges = []
        self.server_first = None
        self.expected_final = None
        self.server_verified = False

    def __call__(self, challenge):
        self.challenges.append(challenge)
        if len(self.challenges) == 1:
            self.first_bare = b"n=" + saslname(self.user) + b",r=" + self.nonce
            return self.gs2 + self.first_bare
        if len(self.challenges) == 2:
            self.server_first = challenge
            attributes = dict(part.split(b"=", 1) for part in challenge.split(b","))
            assert attributes[b"r"].startswith(self.nonce), challenge
            self.salt = base64.b64decode(attributes[b"s"])
            self.iterations = int(attributes[b"i"])
            salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), self.salt,
                                         self.iterations)
            client_key = hmac.digest(salted, b"Client Key", "sha256")
            stored_key = hashlib.sha256(client_key).digest()
            without_proof = (b"c=" + base64.b64encode(self.gs2 + self.binding)
                             + b",r=" + attributes[b"r"])
            auth_message = self.first_bare + b"," + challenge + b"," + without_proof
            signature = hmac.digest(stored_key, auth_message, "sha256")
            proof = bytearray(a ^ b for a, b in zip(client_key, signature))
            if self.tamper:
                proof[0] ^= 1
            server_key = hmac.digest(salted, b"Server Key", "sha256")
            self.expected_final = b"v=" + base64.b64encode(
                hmac.digest(server_key, auth_message, "sha256"))
            return without_proof + b",p=" + base64.b64encode(bytes(proof))
        # The server-final message: the server proves it holds the keys.
        self.server_verified = challenge == self.expected_final
        return b""


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
        number of attempts. With two free failures and doubling delays from 1 s, a
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
        self.assertNotIn("AUTH=LOGIN", imap.capabilities)
        with self.assertRaises(imap.error) as raised:
            imap.authenticate("LOGIN", LoginAuthObject(self.user, self.password))
        self.assertIn("CANNOT", str(raised.exception))
        self.assertIn("offers PLAIN, SCRAM-SHA-256, SCRAM-SHA-256-PLUS", str(raised.exception))
        self.assertEqual(imap.state, "NONAUTH")

    def test_login_mechanism(self):
        imap = self.connect(LOGIN_GATEWAY)
        self.assertEqual(auth_mechanisms(imap.capabilities),
                         ["AUTH=LOGIN", "AUTH=PLAIN", "AUTH=SCRAM-SHA-256",
                          "AUTH=SCRAM-SHA-256-PLUS"])
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


TLS12 = {"maximum_version": ssl.TLSVersion.TLSv1_2}
FAILED = "Authentication failed: wrong user name or password"


class ScramTest(Base):
    def authenticate(self, imap, client, mechanism="SCRAM-SHA-256"):
        """imaplib's AUTHENTICATE; returns None on OK, else the error text."""
        try:
            typ, _ = imap.authenticate(mechanism, client)
        except imap.error as error:
            return str(error)
        self.assertEqual(typ, "OK")
        return None

    def test_advertised_where_plain_is(self):
        imap = self.connect(GATEWAY)
        self.assertEqual(auth_mechanisms(imap.capabilities),
                         ["AUTH=PLAIN", "AUTH=SCRAM-SHA-256", "AUTH=SCRAM-SHA-256-PLUS"])
        client = self.raw(GATEWAY, mode="plain")
        caps = client.ok("CAPABILITY")[0].split()
        self.assertFalse([c for c in caps if c.startswith(b"AUTH=")], caps)
        _, tagged = client.command("AUTHENTICATE SCRAM-SHA-256", tag="p1")
        self.assertTrue(tagged.startswith(b"p1 NO [PRIVACYREQUIRED]"), tagged)

    def test_login_and_server_signature(self):
        imap = self.connect(GATEWAY)
        client = ScramClient(self.user, self.password)
        self.assertIsNone(self.authenticate(imap, client))
        self.assertTrue(client.server_verified, client.challenges)
        self.assertEqual(len(client.challenges), 3)
        # The default iteration count, and a 16-octet salt.
        self.assertEqual(client.iterations, 8192)
        self.assertEqual(len(client.salt), 16)
        self.assertEqual(imap.state, "AUTH")
        typ, _ = imap.select("INBOX")
        self.assertEqual(typ, "OK")

    def test_exact_exchange_with_initial_response(self):
        client = self.raw(GATEWAY)
        scram = ScramClient(self.user, self.password)
        first = scram(b"")
        client.send(b"s1 AUTHENTICATE SCRAM-SHA-256 " + base64.b64encode(first) + b"\r\n")
        line = client.read_line()
        self.assertTrue(line.startswith(b"+ "), line)
        final = scram(base64.b64decode(line[2:]))
        client.send(base64.b64encode(final) + b"\r\n")
        line = client.read_line()
        self.assertTrue(line.startswith(b"+ "), line)
        self.assertEqual(scram(base64.b64decode(line[2:])), b"")
        self.assertTrue(scram.server_verified)
        client.send(b"\r\n")
        _, tagged = client.read_tagged("s1")
        self.assertTrue(tagged.startswith(b"s1 OK [CAPABILITY IMAP4rev1"), tagged)

    def test_wrong_password_tampered_proof_unknown_user_fail_alike(self):
        answers = []
        for client in (ScramClient(self.user, "wrong-pw"),
                       ScramClient(self.user, self.password, tamper=True),
                       ScramClient("nobody-" + self.user, self.password)):
            imap = self.connect(GATEWAY)
            answers.append(self.authenticate(imap, client))
            self.assertEqual(imap.state, "NONAUTH")
            self.assertFalse(client.server_verified)
        for answer in answers:
            self.assertIn("[AUTHENTICATIONFAILED]", answer)
        self.assertIn(FAILED, answers[0])
        self.assertIn(FAILED, answers[2])

    def test_unknown_user_gets_a_stable_salt(self):
        # No user enumeration: an unknown name is answered with a salt that does not
        # change between tries, and the configured count, as a real user is.
        salts = []
        for _ in range(2):
            imap = self.connect(GATEWAY)
            client = ScramClient("ghost-" + self.user, "pw")
            self.authenticate(imap, client)
            salts.append(client.salt)
            self.assertEqual(client.iterations, 8192)
            self.assertEqual(len(client.salt), 16)
        self.assertEqual(salts[0], salts[1])

    def test_user_without_keys_gets_them_at_the_next_password_login(self):
        imap = self.connect(GATEWAY)
        answer = self.authenticate(imap, ScramClient("legacy", "legacy-pw"))
        self.assertIn(FAILED, answer)
        imap = self.connect(GATEWAY)
        typ, _ = imap.login("legacy", "legacy-pw")
        self.assertEqual(typ, "OK")
        imap = self.connect(GATEWAY)
        client = ScramClient("legacy", "legacy-pw")
        self.assertIsNone(self.authenticate(imap, client))
        self.assertTrue(client.server_verified)

    def test_password_change_replaces_the_keys(self):
        SYSTEM.admin("user", "passwd", self.user, "--password", "new-pw")
        imap = self.connect(GATEWAY)
        self.assertIn(FAILED, self.authenticate(imap, ScramClient(self.user, self.password)))
        imap = self.connect(GATEWAY)
        self.assertIsNone(self.authenticate(imap, ScramClient(self.user, "new-pw")))

    def test_wrong_password_is_throttled(self):
        def attempt():
            imap = connect(GATEWAY)
            try:
                return self.authenticate(imap, ScramClient(self.user, "wrong-pw")).encode()
            finally:
                imap.shutdown()

        self.until_throttled(attempt)
        imap = self.connect(GATEWAY)
        answer = self.authenticate(imap, ScramClient(self.user, self.password))
        self.assertIn("Too many failed logins", answer)
        # The same pair is held for PLAIN too.
        imap = self.connect(GATEWAY)
        with self.assertRaises(imap.error) as raised:
            imap.login(self.user, self.password)
        self.assertIn("Too many failed logins", str(raised.exception))

    def test_malformed_messages_and_cancel(self):
        client = self.raw(GATEWAY)
        _, tagged = client.command(b"AUTHENTICATE SCRAM-SHA-256 "
                                   + base64.b64encode(b"x,,n=user,r=abc"), tag="m1")
        self.assertTrue(tagged.startswith(b"m1 BAD Authentication: malformed SCRAM message"),
                        tagged)
        # p= needs the -PLUS mechanism.
        _, tagged = client.command(b"AUTHENTICATE SCRAM-SHA-256 "
                                   + base64.b64encode(b"p=tls-exporter,,n=user,r=abc"), tag="m2")
        self.assertTrue(tagged.startswith(b"m2 BAD"), tagged)
        client.send(b"m3 AUTHENTICATE SCRAM-SHA-256 "
                    + base64.b64encode(b"n,,n=%s,r=abc" % self.user.encode()) + b"\r\n")
        self.assertTrue(client.read_line().startswith(b"+ "))
        client.send(b"*\r\n")
        _, tagged = client.read_tagged("m3")
        self.assertTrue(tagged.startswith(b"m3 BAD AUTHENTICATE cancelled"), tagged)
        # A final message whose nonce is not the server's.
        client.send(b"m4 AUTHENTICATE SCRAM-SHA-256 "
                    + base64.b64encode(b"n,,n=%s,r=abc" % self.user.encode()) + b"\r\n")
        client.read_line()
        client.send(base64.b64encode(b"c=biws,r=abcdef,p=" + base64.b64encode(bytes(32)))
                    + b"\r\n")
        _, tagged = client.read_tagged("m4")
        self.assertTrue(tagged.startswith(b"m4 BAD Authentication: SCRAM: the nonce"), tagged)


class ScramPlusTest(Base):
    def authenticate(self, imap, client, mechanism="SCRAM-SHA-256-PLUS"):
        return ScramTest.authenticate(self, imap, client, mechanism)

    def test_tls_unique_on_tls12(self):
        imap = self.connect(GATEWAY, context(**TLS12))
        self.assertEqual(imap.sock.version(), "TLSv1.2")
        self.assertIn("AUTH=SCRAM-SHA-256-PLUS", imap.capabilities)
        binding = imap.sock.get_channel_binding("tls-unique")
        client = ScramClient(self.user, self.password, b"tls-unique", binding)
        self.assertIsNone(self.authenticate(imap, client))
        self.assertTrue(client.server_verified)
        self.assertEqual(imap.state, "AUTH")

    def test_binding_of_another_connection_fails(self):
        other = self.connect(GATEWAY, context(**TLS12))
        imap = self.connect(GATEWAY, context(**TLS12))
        binding = other.sock.get_channel_binding("tls-unique")
        self.assertNotEqual(binding, imap.sock.get_channel_binding("tls-unique"))
        answer = self.authenticate(imap, ScramClient(self.user, self.password, b"tls-unique",
                                                     binding))
        self.assertIn(FAILED, answer)

    def test_type_not_of_this_connection_fails(self):
        # TLS 1.3 binds with tls-exporter; tls-unique is not defined there (RFC 9266).
        imap = self.connect(GATEWAY)
        self.assertEqual(imap.sock.version(), "TLSv1.3")
        answer = self.authenticate(imap, ScramClient(self.user, self.password, b"tls-unique",
                                                     b"x" * 12))
        self.assertIn("channel binding type tls-unique is not available on this connection; "
                      "it offers tls-exporter", answer)
        imap = self.connect(GATEWAY, context(**TLS12))
        answer = self.authenticate(imap, ScramClient(self.user, self.password, b"tls-exporter",
                                                     b"x" * 32))
        self.assertIn("it offers tls-unique", answer)

    def test_plus_needs_binding_flag(self):
        imap = self.connect(GATEWAY)
        answer = self.authenticate(imap, ScramClient(self.user, self.password))
        self.assertIn("the gs2 header must be p=<type>", answer)

    def test_downgrade_is_refused(self):
        # RFC 5802 §6: "y" (the client binds, but believes the server cannot) while
        # -PLUS is advertised means the list was tampered with.
        for ctx in (context(), context(**TLS12)):
            imap = self.connect(GATEWAY, ctx)
            self.assertIn("AUTH=SCRAM-SHA-256-PLUS", imap.capabilities)
            answer = ScramTest.authenticate(self, imap, ScramClient(self.user, self.password,
                                                                     b"y"))
            self.assertIn("refusing a possible downgrade", answer)
            self.assertEqual(imap.state, "NONAUTH")


SCRAM_PLUS_CLIENT = harness.runfile("tests/e2e/scram_plus_client")


class ScramPlusExporterTest(Base):
    """tls-exporter (RFC 9266) on a real TLS 1.3 connection from an OpenSSL client."""

    def run_client(self, mode):
        result = subprocess.run([SCRAM_PLUS_CLIENT, str(GATEWAY.imaps_port), SYSTEM.cert,
                                 self.user, self.password, mode],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("TLS TLSv1.3", result.stdout)
        return result.stdout

    def test_tls_exporter_logs_in(self):
        out = self.run_client("good")
        self.assertRegex(out, r"RESULT a OK \[CAPABILITY IMAP4rev1")
        self.assertIn("SERVER-VERIFIED yes", out)

    def test_binding_to_another_channel_fails(self):
        out = self.run_client("other-binding")
        self.assertIn("RESULT a NO [AUTHENTICATIONFAILED] " + FAILED, out)
        self.assertIn("SERVER-VERIFIED no", out)

    def test_tls_unique_is_not_offered_on_tls13(self):
        out = self.run_client("tls-unique")
        self.assertIn("RESULT a NO [AUTHENTICATIONFAILED] SCRAM: channel binding type "
                      "tls-unique is not available on this connection; it offers tls-exporter",
                      out)


if __name__ == "__main__":
    unittest.main()
