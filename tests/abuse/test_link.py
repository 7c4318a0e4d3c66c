"""The gateway-service link: TLS with client certificates on both ends.

The mailbox service here listens with TLS and requires a client certificate signed by
its client CA; the gateway presents one. Attacks: reaching the service's port without
a certificate, with a certificate of another CA, or in plaintext (all refused during
the handshake, so no password guess and no admin call ever reaches the service);
starting the service in plaintext on every address or an abstract unix socket
(refused unless --insecure-listen); and, on the plaintext loopback default, a local
user's own gRPC calls that report a made-up client IP with each password guess
(ignored without the gateway token: throttled by the caller's address). And the
operator's side: a renewed server certificate is used for new connections without a
restart."""

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abuse_util  # noqa: E402
from abuse_util import harness  # noqa: E402

SYSTEM = None

# The HTTP/2 client preface (RFC 9113 §3.4) and an empty SETTINGS frame: what a gRPC
# client sends first.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


def make_ca(directory, name):
    cert, key = os.path.join(directory, name + ".pem"), os.path.join(directory, name + ".key")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", "/CN=" + name, "-keyout", key, "-out", cert,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return {"cert": cert, "key": key}


def make_leaf(directory, name, ca, serial):
    """A certificate for server and client use, for localhost and 127.0.0.1."""
    cert, key = os.path.join(directory, name + ".pem"), os.path.join(directory, name + ".key")
    csr, ext = os.path.join(directory, name + ".csr"), os.path.join(directory, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth,clientAuth\n"
                "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-subj", "/CN=" + name, "-keyout", key, "-out", csr)
    _openssl("x509", "-req", "-days", "2", "-set_serial", str(serial), "-in", csr,
             "-CA", ca["cert"], "-CAkey", ca["key"], "-extfile", ext, "-out", cert)
    return {"cert": cert, "key": key}


class LinkSystem(abuse_util.AbuseSystem):
    """AbuseSystem whose service requires client certificates: the gateway and
    mailbox-admin present certificates of the link's CA."""

    def __init__(self):
        self.system = harness.System("abuse-link")
        self.pki_dir = os.path.join(self.system.dir, "pki")
        os.makedirs(self.pki_dir)
        self.ca = make_ca(self.pki_dir, "link-ca")
        self.other_ca = make_ca(self.pki_dir, "other-ca")
        self.server = make_leaf(self.pki_dir, "service", self.ca, 1001)
        self.gateway_cert = make_leaf(self.pki_dir, "gateway", self.ca, 1002)
        self.admin_cert = make_leaf(self.pki_dir, "admin", self.ca, 1003)
        self.rogue = make_leaf(self.pki_dir, "rogue", self.other_ca, 1004)
        # The files the service watches: copies, so a test can replace them.
        self.server_cert_file = os.path.join(self.pki_dir, "live-service.pem")
        self.server_key_file = os.path.join(self.pki_dir, "live-service.key")
        install(self.server, self.server_cert_file, self.server_key_file)
        self.client_ca_file = os.path.join(self.pki_dir, "live-client-ca.pem")
        replace_file(self.ca["cert"], self.client_ca_file)
        self.system.admin_tls = {"ca": self.ca["cert"], "cert": self.admin_cert["cert"],
                                 "key": self.admin_cert["key"]}
        self.system.start_service(
            "--tls-reload-interval=1s",
            tls={"cert": self.server_cert_file, "key": self.server_key_file,
                 "client_ca": self.client_ca_file})
        self.service = self.system.service
        self.gateway = self.system.start_gateway(store_tls=self.store_tls(self.gateway_cert))
        # The canary's LOGIN is the first call over the mutual-TLS link: sent before
        # the gateway's channel is up, it may fail fast with NO [UNAVAILABLE], hence
        # the wait for readiness that comes first.
        self._start_canary()

    def store_tls(self, identity):
        tls = {"ca": self.ca["cert"]}
        if identity:
            tls.update(cert=identity["cert"], key=identity["key"])
        return tls


def replace_file(source, target):
    """Puts a copy of source at target by a rename, as an operator should, so the
    service never reads half a file."""
    with open(source, "rb") as f:
        data = f.read()
    with open(target + ".tmp", "wb") as f:
        f.write(data)
    os.replace(target + ".tmp", target)


def install(files, cert_path, key_path):
    """Replaces a watched certificate and key, key first."""
    replace_file(files["key"], key_path)
    replace_file(files["cert"], cert_path)


def wait_for(predicate, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return predicate()


def setUpModule():
    global SYSTEM
    SYSTEM = LinkSystem()
    unittest.addModuleCleanup(SYSTEM.stop)


def service_handshake(identity=None, ca=None):
    """Speaks TLS and then HTTP/2 to the service's port like a gRPC client. Returns
    (True, server certificate DER) if the service answered with HTTP/2 frames, or
    (False, reason) if it refused the connection."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca or SYSTEM.ca["cert"])
    context.set_alpn_protocols(["h2"])
    if identity:
        context.load_cert_chain(identity["cert"], identity["key"])
    raw = socket.create_connection(("127.0.0.1", SYSTEM.system.service_port), timeout=10)
    try:
        sock = context.wrap_socket(raw, server_hostname="localhost")
        der = sock.getpeercert(binary_form=True)
        sock.sendall(H2_PREFACE)
        # TLS 1.3: the service judges the client's certificate after the client's
        # handshake is done, so a refusal shows up on the first read.
        data = sock.recv(64)
        sock.close()
        if data:
            return True, der
        return False, "closed"
    except (ssl.SSLError, ConnectionError, socket.timeout) as e:
        return False, str(e)
    finally:
        raw.close()


class MutualTlsLinkTest(unittest.TestCase):
    def test_gateway_with_a_client_certificate_works_end_to_end(self):
        with SYSTEM.measure("IMAPS session over the mutual-TLS link") as m:
            c = SYSTEM.client(login=True)
            c.ok("SELECT INBOX")
            message = b"From: a@example.org\r\nSubject: link\r\n\r\nover mutual TLS\r\n"
            tag = c.tag()
            c.send("%s APPEND INBOX {%d+}\r\n" % (tag, len(message)))
            c.send(message + b"\r\n")
            _, tagged = c.read_tagged(tag)
            self.assertTrue(tagged.startswith((tag + " OK").encode()), tagged)
            untagged, tagged = c.command("UID FETCH 1:* BODY.PEEK[]")
            self.assertIn(b" OK", tagged)
            self.assertTrue(any(b"over mutual TLS" in line for line in untagged), untagged)
            c.close()
            m.check(gateway_kib=16 * 1024, service_kib=16 * 1024)
        SYSTEM.assert_canary_alive()

    def test_callers_without_a_verified_certificate_are_refused(self):
        ok, _ = service_handshake(SYSTEM.gateway_cert)
        self.assertTrue(ok, "a gateway certificate must be accepted")
        log_path = os.path.join(SYSTEM.system.dir, "service.log")
        log_offset = os.path.getsize(log_path)
        started = time.monotonic()
        with SYSTEM.measure("300 handshakes without a valid client certificate") as m:
            for i in range(100):
                for identity in (None, SYSTEM.rogue):
                    ok, reason = service_handshake(identity)
                    self.assertFalse(ok, "accepted %s" % (identity and identity["cert"]))
                # Plaintext HTTP/2 to the TLS port: no answer in HTTP/2.
                with socket.create_connection(("127.0.0.1", SYSTEM.system.service_port),
                                              timeout=10) as raw:
                    raw.sendall(H2_PREFACE)
                    try:
                        data = raw.recv(64)
                    except ConnectionError:
                        data = b""
                    self.assertFalse(data.startswith(b"\x00\x00"), data)
                if i % 20 == 0:
                    m.sample()
            m.check(gateway_kib=4 * 1024, service_kib=8 * 1024)
        elapsed = time.monotonic() - started
        # gRPC logs each refused handshake; --grpc-log-lines-per-second (20) bounds
        # what reaches the log, and a log_suppressed line before the next line that
        # passes counts the rest.
        time.sleep(0.2)
        self.assertFalse(service_handshake(None)[0])
        with open(log_path, errors="replace") as f:
            f.seek(log_offset)
            logged = f.read().splitlines()
        self.assertLessEqual(len(logged), 2 * (20 + 20 * elapsed) + 2, logged[-5:])
        self.assertTrue(any('"event":"log_suppressed"' in line and
                            '"suppressed_event":"grpc"' in line for line in logged),
                        logged[-5:])
        SYSTEM.assert_canary_alive()

    def test_mailbox_admin_needs_a_client_certificate_too(self):
        # The admin token never reaches the service without a verified certificate.
        # What the person is told to check names the missing piece.
        for tls, hint in (({"ca": SYSTEM.ca["cert"]}, "give --cert-file and --key-file"),
                          ({"ca": SYSTEM.ca["cert"], "cert": SYSTEM.rogue["cert"],
                            "key": SYSTEM.rogue["key"]}, "its client CA signed --cert-file"),
                          ({"ca": SYSTEM.other_ca["cert"], "cert": SYSTEM.admin_cert["cert"],
                            "key": SYSTEM.admin_cert["key"]}, "--ca-file signed its certificate")):
            with self.assertRaises(RuntimeError) as raised:
                SYSTEM.system.admin("--timeout=5s", "user", "list", tls=tls)
            self.assertIn("UNAVAILABLE", str(raised.exception))
            self.assertIn(hint, str(raised.exception))
        self.assertIn(SYSTEM.canary_user, SYSTEM.system.admin("user", "list"))

    def test_gateway_without_a_client_certificate_answers_unavailable(self):
        gateway = SYSTEM.system.start_gateway(store_tls=SYSTEM.store_tls(None))
        try:
            client = abuse_util.RawClient(gateway.imaps_port, "tls",
                                          cafile=SYSTEM.system.cert, timeout=30)
            _, tagged = client.command('LOGIN "%s" "%s"' % (SYSTEM.user, SYSTEM.password))
            self.assertIn(b" NO [UNAVAILABLE]", tagged)
            client.close()
        finally:
            gateway.process.send_signal(signal.SIGTERM)
            gateway.process.wait(timeout=30)
            SYSTEM.system.gateways.remove(gateway)
        SYSTEM.assert_canary_alive()

    def test_service_certificate_is_reloaded_for_new_connections(self):
        ok, before = service_handshake(SYSTEM.gateway_cert)
        self.assertTrue(ok)
        renewed = make_leaf(SYSTEM.pki_dir, "service-renewed", SYSTEM.ca, 2001)
        try:
            install(renewed, SYSTEM.server_cert_file, SYSTEM.server_key_file)
            # --tls-reload-interval=1s: within a few seconds new handshakes see it.
            with open(renewed["cert"]) as f:
                renewed_der = ssl.PEM_cert_to_DER_cert(f.read())
            self.assertNotEqual(before, renewed_der)
            self.assertTrue(wait_for(lambda: service_handshake(SYSTEM.gateway_cert)
                                     == (True, renewed_der)),
                            "the renewed certificate was not served")
            # The gateway, which verifies the service against the CA, still gets in
            # on new connections.
            fresh = SYSTEM.system.start_gateway(store_tls=SYSTEM.store_tls(SYSTEM.gateway_cert))
            try:
                client = abuse_util.RawClient(fresh.imaps_port, "tls",
                                              cafile=SYSTEM.system.cert, timeout=30)
                client.login(SYSTEM.user, SYSTEM.password)
                client.ok("NOOP")
                client.close()
            finally:
                fresh.process.send_signal(signal.SIGTERM)
                fresh.process.wait(timeout=30)
                SYSTEM.system.gateways.remove(fresh)
        finally:
            install(SYSTEM.server, SYSTEM.server_cert_file, SYSTEM.server_key_file)
        SYSTEM.assert_canary_alive()


    def test_gateway_client_certificate_is_reloaded(self):
        # A gateway whose certificate files hold another CA's certificate is refused;
        # once the operator puts a good one in their place, its next connection
        # attempt presents that, without a restart.
        cert = os.path.join(SYSTEM.pki_dir, "live-gateway.pem")
        key = os.path.join(SYSTEM.pki_dir, "live-gateway.key")
        install(SYSTEM.rogue, cert, key)
        gateway = SYSTEM.system.start_gateway(
            "--store-tls-reload-interval=1s",
            store_tls={"ca": SYSTEM.ca["cert"], "cert": cert, "key": key})

        def login():
            client = abuse_util.RawClient(gateway.imaps_port, "tls",
                                          cafile=SYSTEM.system.cert, timeout=30)
            try:
                _, tagged = client.command('LOGIN "%s" "%s"' % (SYSTEM.user, SYSTEM.password))
                return tagged
            finally:
                client.close()

        try:
            self.assertIn(b" NO [UNAVAILABLE]", login())
            install(SYSTEM.gateway_cert, cert, key)
            # gRPC retries a failed connection with a backoff that starts at 1 s.
            self.assertTrue(wait_for(lambda: b" OK " in login(), seconds=30),
                            "the gateway did not pick up its new certificate")
        finally:
            gateway.process.send_signal(signal.SIGTERM)
            gateway.process.wait(timeout=30)
            SYSTEM.system.gateways.remove(gateway)
        SYSTEM.assert_canary_alive()

    def test_client_ca_is_reloaded_for_new_connections(self):
        self.assertFalse(service_handshake(SYSTEM.rogue)[0])
        try:
            # The operator moves the link to another CA: its certificates get in, the
            # old CA's no longer do.
            replace_file(SYSTEM.other_ca["cert"], SYSTEM.client_ca_file)
            self.assertTrue(wait_for(lambda: service_handshake(SYSTEM.rogue)[0]),
                            "the new client CA was not used")
            self.assertFalse(service_handshake(SYSTEM.gateway_cert)[0])
        finally:
            replace_file(SYSTEM.ca["cert"], SYSTEM.client_ca_file)
        self.assertTrue(wait_for(lambda: service_handshake(SYSTEM.gateway_cert)[0]))
        self.assertFalse(service_handshake(SYSTEM.rogue)[0])
        SYSTEM.assert_canary_alive()


# --- The gateway token on a plaintext link -------------------------------------------
#
# Every local user can reach the service's loopback port. A password guesser there
# speaks gRPC itself and reports a made-up client IP with each guess; only a caller
# with the gateway token (data/gateway.token) may name the client, anyone else is
# throttled by its own address. The guesser below binds other loopback addresses
# (127.0.0.2...) so that its throttle is not the gateway's clients' (127.0.0.1).

def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _proto_field(number, value):
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _hpack_literal(name, value):
    """A header as an HPACK literal without indexing, new name, no Huffman coding
    (RFC 7541 §6.2.2); lengths below 127 fit the 7-bit prefix."""
    name, value = name.encode(), value.encode()
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def _frame(kind, flags, stream, payload):
    return (len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big")
            + payload)


def _read_exact(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the service closed the connection")
        data += chunk
    return data


def raw_authenticate(port, username, password, client_ip, token=None, source="127.0.0.2"):
    """One Authenticate call in plaintext HTTP/2 from `source`, as a local user's own
    program would make it. Returns (grpc-status, grpc-message)."""
    request = (_proto_field(1, 1) + _proto_field(2, username.encode())
               + _proto_field(3, password.encode()) + _proto_field(7, client_ip.encode()))
    headers = b"".join(_hpack_literal(n, v) for n, v in (
        (":method", "POST"), (":scheme", "http"),
        (":path", "/mailbox.v1.Mailbox/Authenticate"), (":authority", "127.0.0.1:%d" % port),
        ("content-type", "application/grpc"), ("te", "trailers")))
    if token is not None:
        headers += _hpack_literal("x-mailbox-gateway-token", token)
    message = b"\x00" + len(request).to_bytes(4, "big") + request
    sock = socket.create_connection(("127.0.0.1", port), timeout=30,
                                    source_address=(source, 0))
    try:
        sock.sendall(H2_PREFACE + _frame(1, 0x4, 1, headers) + _frame(0, 0x1, 1, message))
        blocks = b""
        while True:
            head = _read_exact(sock, 9)
            length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
            payload = _read_exact(sock, length)
            if kind == 4 and not flags & 0x1:  # the service's SETTINGS: acknowledge
                sock.sendall(_frame(4, 0x1, 0, b""))
            elif kind in (1, 9):  # HEADERS, CONTINUATION
                blocks += payload
                if flags & 0x1:  # END_STREAM: the trailers are in
                    break
            elif kind in (3, 7):  # RST_STREAM, GOAWAY
                raise ConnectionError("the service reset the call (frame type %d)" % kind)
    finally:
        sock.close()
    # gRPC sends its trailers as literal, not Huffman-coded, strings on a fresh
    # connection (the first use of each name), so they can be found as bytes.
    found = {}
    for name in (b"grpc-status", b"grpc-message"):
        at = blocks.find(name)
        if at >= 0:
            size = blocks[at + len(name)] & 0x7F
            found[name] = blocks[at + len(name) + 1:at + len(name) + 1 + size].decode(
                errors="replace")
    if b"grpc-status" not in found:
        raise AssertionError("no grpc-status in the service's answer: %r" % blocks)
    return int(found[b"grpc-status"]), found.get(b"grpc-message", "")


UNAUTHENTICATED, RESOURCE_EXHAUSTED = 16, 8
FREE_FAILURES = 5


class GatewayTokenTest(unittest.TestCase):
    """The embedded default (plaintext on loopback) with a low per-address allowance."""

    @classmethod
    def setUpClass(cls):
        cls.sys = abuse_util.AbuseSystem(
            "link-token", service_flags=("--auth-ip-free-failures=%d" % FREE_FAILURES,))
        cls.port = cls.sys.system.service_port
        cls.token_file = os.path.join(cls.sys.system.dir, "data", "gateway.token")
        with open(cls.token_file) as f:
            cls.token = f.read().strip()

    @classmethod
    def tearDownClass(cls):
        cls.sys.stop()

    def guesses(self, count, token, source):
        """`count` wrong passwords for one user, each reporting a new client IP."""
        results = []
        which = "no" if token is None else "the" if token == self.token else "a wrong"
        with self.sys.measure("link: %d guesses, new client IPs, %s token" % (count, which)) as m:
            for i in range(count):
                results.append(raw_authenticate(self.port, self.sys.user, "wrong-%d" % i,
                                                "198.51.%d.%d" % (i // 250, i % 250 + 1),
                                                token=token, source=source))
                m.sample()
            m.check(gateway_kib=4096, service_kib=16384)
        return results

    def assert_throttled_by_address(self, results):
        codes = [code for code, _ in results]
        self.assertEqual(codes[:FREE_FAILURES], [UNAUTHENTICATED] * FREE_FAILURES, results)
        # Past the allowance of the caller's own address, guesses are refused unchecked
        # (one more may be checked where the allowance counts per user and address).
        self.assertGreaterEqual(codes.count(RESOURCE_EXHAUSTED), len(codes) - FREE_FAILURES - 1,
                                results)
        self.assertIn("Too many failed logins", results[-1][1])

    def test_made_up_client_ips_without_the_token_are_ignored(self):
        self.assert_throttled_by_address(self.guesses(40, None, "127.0.0.2"))
        # Said once (for this test's caller or the one before), for the operator.
        with open(os.path.join(self.sys.system.dir, "service.log"), errors="replace") as f:
            self.assertEqual(f.read().count("ignoring the client IP reported by ipv4:127.0.0."), 1)
        self.sys.assert_canary_alive()

    def test_a_wrong_token_is_no_token(self):
        wrong = ("0" if self.token[0] != "0" else "1") + self.token[1:]
        self.assert_throttled_by_address(self.guesses(40, wrong, "127.0.0.3"))
        self.sys.assert_canary_alive()

    def test_the_gateway_token_lets_the_caller_name_the_client(self):
        results = self.guesses(20, self.token, "127.0.0.4")
        self.assertEqual([code for code, _ in results], [UNAUTHENTICATED] * 20, results)
        # One client IP named again and again is throttled as that client.
        again = [raw_authenticate(self.port, self.sys.user, "wrong", "203.0.113.7",
                                  token=self.token, source="127.0.0.4")[0]
                 for _ in range(FREE_FAILURES + 2)]
        self.assertEqual(again[-1], RESOURCE_EXHAUSTED, again)
        self.sys.assert_canary_alive()

    def imap_login(self, source, password):
        """LOGIN as the attacker user through the gateway, from the IMAP client address
        `source`. Returns the tagged reply."""
        raw = socket.create_connection(("127.0.0.1", self.sys.gateway.imaps_port), timeout=30,
                                       source_address=(source, 0))
        context = ssl.create_default_context(cafile=self.sys.system.cert)
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            reader = sock.makefile("rb")
            reader.readline()  # greeting
            sock.sendall(b'a LOGIN "%s" "%s"\r\n' % (self.sys.user.encode(), password.encode()))
            while True:
                line = reader.readline()
                if not line or line.startswith(b"a "):
                    return line.decode(errors="replace").strip()

    def test_the_gateway_sends_the_token_so_its_clients_are_throttled_apart(self):
        # The harness's gateway has the token: the service throttles 127.0.0.5, the
        # IMAP client, not the gateway's own address. Without the token both clients
        # below would be 127.0.0.1 to the service, and the second one refused too.
        replies = [self.imap_login("127.0.0.5", "wrong") for _ in range(FREE_FAILURES + 1)]
        self.assertTrue(all(" NO " in reply for reply in replies), replies)
        refused = self.imap_login("127.0.0.5", self.sys.password)
        self.assertIn("Too many failed logins", refused)
        self.assertIn("a OK", self.imap_login("127.0.0.6", self.sys.password))
        self.sys.assert_canary_alive()

    def test_token_file_is_the_services_alone(self):
        self.assertEqual(os.stat(self.token_file).st_mode & 0o777, 0o600)
        self.assertEqual(len(self.token), 64)
        # A copy others can read is refused by the gateway at start, naming the fix.
        exposed = os.path.join(self.sys.system.dir, "exposed.token")
        with open(exposed, "w") as f:
            f.write(self.token + "\n")
        os.chmod(exposed, 0o644)
        result = subprocess.run(
            [harness.GATEWAY, "--store=127.0.0.1:%d" % self.port, "--store-token-file=" + exposed,
             "--imap-listen=127.0.0.1:0", "--imaps-listen=127.0.0.1:0", "--http-listen=",
             "--tls-cert-file=" + self.sys.system.cert, "--tls-key-file=" + self.sys.system.key],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("every local user can read the gateway token", result.stderr)

    def test_gateway_without_the_token_says_so_and_still_works(self):
        gateway = self.sys.system.start_gateway(store_token_file="")
        try:
            client = abuse_util.RawClient(gateway.imaps_port, "tls", cafile=self.sys.system.cert,
                                          timeout=30)
            client.login(self.sys.canary_user, self.sys.canary_password)
            client.close()
            self.assertIn("neither --store-token-file nor --store-cert-file", gateway.log())
        finally:
            gateway.process.send_signal(signal.SIGTERM)
            gateway.process.wait(timeout=30)
            self.sys.system.gateways.remove(gateway)


class PlaintextListenTest(unittest.TestCase):
    def run_service(self, *flags, wait_for_port=False):
        data = os.path.join(SYSTEM.system.dir, "plaintext-data")
        port_file = os.path.join(data, "port")
        if os.path.exists(port_file):
            os.remove(port_file)
        process = subprocess.Popen(
            [harness.SERVICE, "--data-dir=" + data, "--port-file=" + port_file,
             "--http-listen=127.0.0.1:0",
             "--argon2-memory=64KiB", "--argon2-time-cost=1"] + list(flags),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if not wait_for_port:
            out, _ = process.communicate(timeout=30)
            return process.returncode, out.decode(errors="replace")
        try:
            harness._wait_for_file(port_file, process, "mailbox-service")
        finally:
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=30)
        return process.returncode, out.decode(errors="replace")

    def test_plaintext_on_every_address_refuses_to_start(self):
        code, out = self.run_service("--listen=0.0.0.0:0")
        self.assertEqual(code, 2, out)
        self.assertIn("refusing to listen on 0.0.0.0:0 without TLS", out)
        self.assertIn("--insecure-listen", out)
        code, out = self.run_service("--listen=[::]:0")
        self.assertEqual(code, 2, out)

    def test_insecure_listen_is_the_operators_explicit_choice(self):
        _, out = self.run_service("--listen=0.0.0.0:0", "--insecure-listen",
                                  wait_for_port=True)
        self.assertIn("warning: listening on 0.0.0.0:0 without TLS", out)

    def test_abstract_unix_socket_is_not_private(self):
        # No file permissions guard it: any local process can connect, so plaintext
        # there needs the operator's --insecure-listen like a network address.
        code, out = self.run_service("--listen=unix-abstract:imapd-link-test")
        self.assertEqual(code, 2, out)
        self.assertIn("refusing to listen on unix-abstract:imapd-link-test without TLS", out)

    def test_tls_on_every_address_starts(self):
        self.run_service("--listen=0.0.0.0:0", "--tls-cert-file=" + SYSTEM.server["cert"],
                         "--tls-key-file=" + SYSTEM.server["key"],
                         "--tls-client-ca-file=" + SYSTEM.ca["cert"], wait_for_port=True)

    def test_unusable_files_are_named_at_start(self):
        code, out = self.run_service("--tls-cert-file=" + SYSTEM.server["cert"],
                                     "--tls-key-file=" + SYSTEM.rogue["key"],
                                     "--tls-client-ca-file=" + SYSTEM.ca["cert"])
        self.assertEqual(code, 2, out)
        self.assertIn("does not belong to the certificate", out)
        code, out = self.run_service("--tls-cert-file=" + SYSTEM.server["cert"],
                                     "--tls-key-file=" + SYSTEM.server["key"])
        self.assertEqual(code, 2, out)
        self.assertIn("--tls-client-ca-file", out)


if __name__ == "__main__":
    unittest.main()
