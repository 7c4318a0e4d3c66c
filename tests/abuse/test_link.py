"""The gateway-service link: TLS with client certificates on both ends.

The mailbox service here listens with TLS and requires a client certificate signed by
its client CA; the gateway presents one. Attacks: reaching the service's port without
a certificate, with a certificate of another CA, or in plaintext (all refused during
the handshake, so no password guess and no admin call ever reaches the service);
starting the service in plaintext on every address (refused unless
--insecure-listen). And the operator's side: a renewed server certificate is used for
new connections without a restart."""

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
            "--tls-reload-seconds=1",
            tls={"cert": self.server_cert_file, "key": self.server_key_file,
                 "client_ca": self.client_ca_file})
        self.service = self.system.service
        self.gateway = self.system.start_gateway(store_tls=self.store_tls(self.gateway_cert))
        self.canary_user, self.canary_password = self.system.new_user("canary")
        self.user, self.password = self.system.new_user("attacker")
        self.canary = self.client()
        self.canary.login(self.canary_user, self.canary_password)
        self.canary.ok("SELECT INBOX")

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
        # what reaches the log, and the next line that passes counts the rest.
        time.sleep(0.2)
        self.assertFalse(service_handshake(None)[0])
        with open(log_path, errors="replace") as f:
            f.seek(log_offset)
            logged = f.read().splitlines()
        self.assertLessEqual(len(logged), 2 * (20 + 20 * elapsed) + 2, logged[-5:])
        self.assertTrue(any("gRPC log lines dropped" in line for line in logged), logged[-5:])
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
                SYSTEM.system.admin("--timeout=5", "user", "list", tls=tls)
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
            # --tls-reload-seconds=1: within a few seconds new handshakes see it.
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
            "--store-tls-reload-seconds=1",
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


class PlaintextListenTest(unittest.TestCase):
    def run_service(self, *flags, wait_for_port=False):
        data = os.path.join(SYSTEM.system.dir, "plaintext-data")
        port_file = os.path.join(data, "port")
        if os.path.exists(port_file):
            os.remove(port_file)
        process = subprocess.Popen(
            [harness.SERVICE, "--data-dir=" + data, "--port-file=" + port_file,
             "--argon2-memory-kib=64", "--argon2-time-cost=1"] + list(flags),
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
