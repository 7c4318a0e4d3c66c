"""interimap (Debian's interimap package) keeps a local Dovecot store in two-way
sync with the gateway. It refuses servers without QRESYNC, and relies on
SELECT ... (QRESYNC (...)), VANISHED, UID STORE (UNCHANGEDSINCE), UIDPLUS and
LIST-STATUS; an EXPUNGE response where VANISHED is due is fatal to it.

The local side is Dovecot's imap binary run as a tunnel (preauthenticated, no
daemon) on a private maildir. Dovecot refuses to serve mail as root, so under
root the tunnel runs as `nobody` (setpriv), in a directory outside /root.
"""

import imaplib
import os
import pwd
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from raw_client import RawClient  # noqa: E402

INTERIMAP = "/usr/bin/interimap"
DOVECOT_IMAP = "/usr/lib/dovecot/imap"

SYSTEM = None
GATEWAY = None


def setUpModule():
    global SYSTEM, GATEWAY
    SYSTEM = harness.System("interimap")
    try:
        SYSTEM.start_service()
        GATEWAY = SYSTEM.start_gateway()
    except Exception:
        SYSTEM.stop()
        raise


def tearDownModule():
    if SYSTEM:
        SYSTEM.stop()


def message(n):
    return (b"From: Sync <sync@example.org>\r\n"
            b"To: Box <box@example.org>\r\n"
            b"Subject: interimap %d\r\n"
            b"Message-ID: <interimap-%d@example.org>\r\n"
            b"\r\n"
            b"Body %d.\r\n" % (n, n, n))


def flags_by_subject(imap, mailbox="INBOX"):
    """{subject number: set of flags} of every message, \\Recent left out."""
    typ, _ = imap.select(mailbox, readonly=True)
    assert typ == "OK"
    typ, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    out = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        number = int(re.search(rb"interimap (\d+)", item[1]).group(1))
        flags = set(re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split())
        out[number] = flags - {"\\Recent"}
    imap.close()
    return out


class InterimapTest(unittest.TestCase):
    def setUp(self):
        for tool in (INTERIMAP, DOVECOT_IMAP):
            self.assertTrue(os.access(tool, os.X_OK),
                            "%s is missing: tools/install-deps.sh installs it" % tool)
        self.user, self.password = SYSTEM.new_user("sync")
        self.work = tempfile.mkdtemp(prefix="interimap-", dir="/tmp")
        os.chmod(self.work, 0o755)
        local = os.path.join(self.work, "local")
        for sub in ("mail", "run", "state"):
            os.makedirs(os.path.join(local, sub))
        conf = os.path.join(local, "dovecot.conf")
        with open(conf, "w") as f:
            f.write("base_dir = %s/run\nstate_dir = %s/state\nlog_path = /dev/stderr\n"
                    "ssl = no\nmail_location = maildir:%s/mail\n"
                    "namespace inbox {\n  inbox = yes\n  separator = /\n}\n"
                    % (local, local, local))
        command = [DOVECOT_IMAP, "-c", conf]
        user = pwd.getpwuid(os.getuid()).pw_name
        if os.getuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for root, dirs, files in os.walk(local):
                for name in [root] + [os.path.join(root, x) for x in dirs + files]:
                    os.chown(name, nobody.pw_uid, nobody.pw_gid)
            command = ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                       "--clear-groups"] + command
            user = "nobody"
        command = ["env", "-i", "PATH=/usr/bin:/bin", "USER=" + user, "HOME=" + local] + command
        self.tunnel = " ".join(shlex.quote(part) for part in command)
        self.config = os.path.join(self.work, "interimap.conf")
        with open(self.config, "w") as f:
            f.write("database = %s/sync.db\nlist-mailbox = INBOX\n\n"
                    "[local]\ntype = tunnel\ncommand = %s\n\n"
                    "[remote]\ntype = imaps\nhost = 127.0.0.1\nport = %d\n"
                    "username = %s\npassword = %s\nSSL_CAfile = %s\nSSL_verify = YES\n"
                    % (self.work, self.tunnel, GATEWAY.imaps_port, self.user, self.password,
                       SYSTEM.cert))
        os.chmod(self.config, 0o600)
        self.runs = 0

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)
        self.assertTrue(GATEWAY.alive(), "gateway died:\n" + GATEWAY.log()[-3000:])

    def sync(self):
        self.runs += 1
        result = subprocess.run([INTERIMAP, "--config=" + self.config, "--debug"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=120,
                                env={"PATH": "/usr/bin:/bin", "HOME": self.work,
                                     "LANG": "C.UTF-8"})
        transcript = result.stdout.decode("utf-8", "replace")
        with open(os.path.join(self.work, "run%d.log" % self.runs), "w") as f:
            f.write(transcript)
        self.assertEqual(result.returncode, 0,
                         "interimap run %d failed:\n%s" % (self.runs, transcript[-4000:]))
        return transcript

    def local(self):
        return imaplib.IMAP4_stream(self.tunnel + " 2>/dev/null")

    def remote(self):
        client = RawClient(GATEWAY.imaps_port, "tls", cafile=SYSTEM.cert)
        client.login(self.user, self.password)
        return client

    def remote_flags(self):
        client = imaplib.IMAP4_SSL("127.0.0.1", GATEWAY.imaps_port,
                                   ssl_context=ssl.create_default_context(cafile=SYSTEM.cert),
                                   timeout=15)
        client.login(self.user, self.password)
        try:
            return flags_by_subject(client)
        finally:
            client.logout()

    def append_remote(self, client, n, flags=b""):
        data = message(n)
        tag = client.tag()
        client.send(b"%s APPEND INBOX %s{%d+}\r\n%s\r\n" % (tag.encode(), flags, len(data), data))
        _, tagged = client.read_tagged(tag)
        self.assertTrue(tagged.startswith(tag.encode() + b" OK"), tagged)

    def test_two_way_sync_of_messages_flags_and_expunges(self):
        remote = self.remote()
        for n, flags in ((1, b""), (2, b"(\\Flagged) "), (3, b"")):
            self.append_remote(remote, n, flags)
        transcript = self.sync()
        # Every run enables QRESYNC; runs after the first select with its parameter.
        self.assertIn("ENABLE QRESYNC", transcript)
        local = self.local()
        self.assertEqual(flags_by_subject(local), {1: set(), 2: {"\\Flagged"}, 3: set()})

        # Flags changed on both sides travel both ways.
        local.select("INBOX")
        local.uid("STORE", "1", "+FLAGS", "(\\Seen $Label1)")
        local.close()
        remote.ok("SELECT INBOX")
        remote.ok("STORE 3 +FLAGS.SILENT (\\Answered)")
        transcript = self.sync()
        self.assertRegex(transcript, r"SELECT INBOX \(QRESYNC \(\d+ \d+")
        self.assertEqual(self.remote_flags(),
                         {1: {"\\Seen", "$Label1"}, 2: {"\\Flagged"}, 3: {"\\Answered"}})
        self.assertEqual(flags_by_subject(local),
                         {1: {"\\Seen", "$Label1"}, 2: {"\\Flagged"}, 3: {"\\Answered"}})

        # A message appended locally reaches the gateway (APPEND, then APPENDUID).
        local.append("INBOX", "(\\Draft)", None, message(4))
        self.sync()
        self.assertEqual(self.remote_flags()[4], {"\\Draft"})

        # An expunge on the gateway reaches the local store (VANISHED (EARLIER) at
        # the next QRESYNC select), and one made locally reaches the gateway.
        remote.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
        remote.ok("UID EXPUNGE 2")
        self.sync()
        self.assertEqual(set(flags_by_subject(local)), {1, 3, 4})
        local.select("INBOX")
        typ, data = local.uid("SEARCH", "HEADER", "Subject", '"interimap 4"')
        self.assertEqual(len(data[0].split()), 1, data)
        local.uid("STORE", data[0].decode(), "+FLAGS", "(\\Deleted)")
        local.expunge()
        local.close()
        self.sync()
        self.assertEqual(set(self.remote_flags()), {1, 3})

        # Nothing left to do: a further run changes nothing on either side.
        self.sync()
        self.assertEqual(flags_by_subject(local), self.remote_flags())
        local.logout()
        remote.close()

    def test_a_session_open_during_the_sync_sees_the_changes(self):
        # interimap's writes are ordinary commands: a client with the mailbox
        # selected hears of them as they happen.
        remote = self.remote()
        self.append_remote(remote, 1)
        self.sync()
        watcher = self.remote()
        watcher.ok("SELECT INBOX")
        local = self.local()
        local.append("INBOX", "()", None, message(2))
        local.select("INBOX")
        local.uid("STORE", "1", "+FLAGS", "(\\Seen)")
        local.close()
        local.logout()
        self.sync()
        deadline = time.monotonic() + 10
        seen = []
        while not (any(b"* 2 EXISTS" == line for line in seen) and
                   any(b"\\Seen" in line for line in seen)):
            self.assertLess(time.monotonic(), deadline, "never told: %r" % seen)
            seen += watcher.ok("NOOP")
            time.sleep(0.1)
        remote.close()
        watcher.close()


if __name__ == "__main__":
    unittest.main()
