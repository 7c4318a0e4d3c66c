"""The gateway when the mailbox service goes away and comes back, big messages
streamed with bounded gateway memory, and a graceful SIGTERM drain."""

import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from raw_client import RawClient  # noqa: E402

SYSTEM = None
GATEWAY = None


def setUpModule():
    global SYSTEM, GATEWAY
    SYSTEM = harness.System("resilience")
    unittest.addModuleCleanup(SYSTEM.stop)
    SYSTEM.start_service()
    GATEWAY = SYSTEM.start_gateway()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def client():
    return RawClient(GATEWAY.imaps_port, "tls", cafile=SYSTEM.cert, timeout=60)


class UnavailableTest(unittest.TestCase):
    def test_service_outage_gives_no_unavailable_and_the_session_recovers(self):
        user, password = SYSTEM.new_user("outage")
        c = client()
        c.login(user, password)
        c.ok("SELECT INBOX")
        SYSTEM.stop_service()
        try:
            untagged, tagged = c.command("STATUS INBOX (MESSAGES)", timeout=40)
            self.assertRegex(tagged, rb"^\S+ NO \[UNAVAILABLE\] .+")
            # The session stays up while the service is away.
            c.ok("NOOP")
        finally:
            SYSTEM.start_service()  # same port and data directory
        deadline = time.monotonic() + 30
        while True:
            untagged, tagged = c.command("STATUS INBOX (MESSAGES)", timeout=40)
            if b" OK " in tagged or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertIn(b" OK ", tagged)
        self.assertTrue(any(b"MESSAGES 0" in line for line in untagged), untagged)
        c.ok("LOGOUT")
        c.close()


class ExpungedElsewhereTest(unittest.TestCase):
    def test_a_message_expunged_elsewhere_stays_fetchable_until_the_session_is_told(self):
        user, password = SYSTEM.new_user("told")
        a = client()
        a.login(user, password)
        message = b"From: x@example.org\r\nSubject: still here\r\n\r\nthe body\r\n"
        a.send(b"t1 APPEND INBOX {%d+}\r\n%s\r\n" % (len(message), message))
        a.read_tagged("t1")
        a.ok("SELECT INBOX")
        b = client()
        b.login(user, password)
        b.ok("SELECT INBOX")
        b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        b.ok("EXPUNGE")
        b.close()
        time.sleep(0.3)  # the change has reached session A's gateway by now
        # RFC 3501 §7.4.1: no EXPUNGE during FETCH by sequence number, and the
        # message is still there for A until A has been told.
        untagged, tagged = a.command("FETCH 1 (UID BODY.PEEK[TEXT])")
        self.assertIn(b" OK ", tagged)
        self.assertTrue(any(b"the body" in line for line in untagged), untagged)
        self.assertFalse(any(b"EXPUNGE" in line for line in untagged), untagged)
        untagged, tagged = a.command("NOOP")
        self.assertIn(b"* 1 EXPUNGE", untagged)
        a.close()


class BigMessageTest(unittest.TestCase):
    def test_fifty_megabyte_append_and_fetch_stream_through_bounded_memory(self):
        user, password = SYSTEM.new_user("big")
        size = 50 * 1024 * 1024
        header = b"From: big@example.org\r\nSubject: fifty megabytes\r\n\r\n"
        line = b"x" * 78 + b"\r\n"
        body_size = size - len(header)
        c = client()
        c.login(user, password)
        before = rss_kib(GATEWAY.process.pid)
        tag = c.tag()
        c.send(b"%s APPEND INBOX {%d}\r\n" % (tag.encode(), size))
        c.expect_continuation()
        c.send(header)
        sent = 0
        block = line * 13107  # about 1 MiB
        while sent < body_size:
            chunk = block[: body_size - sent]
            c.send(chunk)
            sent += len(chunk)
        c.send(b"\r\n")
        _, tagged = c.read_tagged(tag, timeout=120)
        self.assertRegex(tagged, rb"OK \[APPENDUID \d+ \d+\]")
        after_append = rss_kib(GATEWAY.process.pid)

        c.ok("SELECT INBOX")
        tag = c.tag()
        c.send(b"%s FETCH 1 BODY.PEEK[]\r\n" % tag.encode())
        # Read the literal as it streams, without the driver's line assembly.
        data = b""
        while b"}\r\n" not in data:
            data += c.sock.recv(65536)
        announced = int(re.search(rb"\{(\d+)\}\r\n", data).group(1))
        self.assertEqual(announced, size)
        received = len(data) - data.index(b"}\r\n") - 3
        peak = rss_kib(GATEWAY.process.pid)
        while received < size:
            chunk = c.sock.recv(1 << 20)
            self.assertTrue(chunk)
            received += len(chunk)
            peak = max(peak, rss_kib(GATEWAY.process.pid))
        c.buffer = b""
        c.close()
        print("gateway RSS growth: APPEND %d KiB, FETCH %d KiB" % (after_append - before, peak - before),
              file=sys.stderr)
        # Neither direction held the message: far less than 50 MB of growth.
        self.assertLess(after_append - before, 24 * 1024, "APPEND grew RSS by %d KiB" % (after_append - before))
        self.assertLess(peak - before, 24 * 1024, "FETCH grew RSS by %d KiB" % (peak - before))


def peer_certificate_subject(port):
    import ssl
    import socket
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    import subprocess
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                         input=der, capture_output=True, check=True)
    return out.stdout.decode()


def bytes_received(gateway):
    return harness.metric_total(gateway.http_port, "imapd_gateway_received_bytes_total")


class PipeliningTest(unittest.TestCase):
    def test_pipelined_commands_are_read_while_an_earlier_one_waits_for_the_store(self):
        gateway = SYSTEM.start_gateway()
        user, password = SYSTEM.new_user("pipe")
        c = RawClient(gateway.imaps_port, "tls", cafile=SYSTEM.cert, timeout=60)
        c.login(user, password)
        before = bytes_received(gateway)
        # Freeze the mailbox service so the first command waits on it.
        SYSTEM.service.send_signal(signal.SIGSTOP)
        try:
            c.send(b"p1 STATUS INBOX (MESSAGES)\r\n")
            time.sleep(0.3)
            pipelined = b"p2 NOOP\r\np3 CAPABILITY\r\n"
            c.send(pipelined)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if bytes_received(gateway) - before >= len(b"p1 STATUS INBOX (MESSAGES)\r\n") + len(pipelined):
                    break
                time.sleep(0.1)
            received = bytes_received(gateway) - before
        finally:
            SYSTEM.service.send_signal(signal.SIGCONT)
        # Read while p1 was still waiting for the service...
        self.assertGreaterEqual(received, len(b"p1 STATUS INBOX (MESSAGES)\r\n") + len(pipelined))
        # ...and answered in order once it returned (RFC 3501 §5.5).
        lines = c.read_lines_until(lambda line: line.startswith(b"p3 "), timeout=60)
        tagged = [line.split(b" ")[0] for line in lines if line.startswith(b"p")]
        self.assertEqual(tagged, [b"p1", b"p2", b"p3"])
        c.close()


class CertificateReloadTest(unittest.TestCase):
    def test_sighup_reloads_the_certificate_without_a_restart(self):
        import shutil
        import subprocess
        cert = os.path.join(SYSTEM.dir, "reload-cert.pem")
        key = os.path.join(SYSTEM.dir, "reload-key.pem")
        shutil.copy(SYSTEM.cert, cert)
        shutil.copy(SYSTEM.key, key)
        gateway = SYSTEM.start_gateway("--tls-cert-file=" + cert, "--tls-key-file=" + key,
                                       "--tls-reload-interval=0s")
        self.assertIn("CN = localhost", peer_certificate_subject(gateway.imaps_port))
        # An operator rotates the secret: new files, then SIGHUP.
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key + ".new", "-out", cert + ".new", "-days", "2",
                        "-subj", "/CN=rotated.example"], check=True, capture_output=True)
        os.replace(key + ".new", key)
        os.replace(cert + ".new", cert)
        gateway.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        subject = ""
        while time.monotonic() < deadline:
            subject = peer_certificate_subject(gateway.imaps_port)
            if "rotated.example" in subject:
                break
            time.sleep(0.2)
        self.assertIn("rotated.example", subject)
        self.assertTrue(gateway.alive())


class DrainTest(unittest.TestCase):
    def test_sigterm_ends_sessions_and_exits_zero(self):
        gateway = SYSTEM.start_gateway("--drain-timeout=2s")
        user, password = SYSTEM.new_user("drain")
        c = RawClient(gateway.imaps_port, "tls", cafile=SYSTEM.cert)
        c.login(user, password)
        selected = RawClient(gateway.imaps_port, "tls", cafile=SYSTEM.cert)
        selected.login(user, password)
        selected.ok("SELECT INBOX")
        gateway.process.send_signal(signal.SIGTERM)
        self.assertEqual(gateway.process.wait(timeout=30), 0)
        c.close()
        selected.close()


if __name__ == "__main__":
    unittest.main()
