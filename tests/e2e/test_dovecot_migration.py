"""Moving an account from Dovecot without a resync: `mailbox-admin import dovecot`.

A real Dovecot (Debian's imap binary, run as a preauthenticated tunnel on its
own Maildir++ tree, as test_interimap.py runs it) receives mail over IMAP:
APPENDs to INBOX and folders, flags and keywords, expunges that leave UID gaps
(the last UID too, so UIDNEXT is above every message), subscriptions. A real
sync client, mbsync (Debian's isync), caches it, recording UIDVALIDITY and UIDs
in its state. Then Dovecot's Maildir is imported into our service, and:
  * imaplib through the gateway sees the same UIDVALIDITY, UIDs, UIDNEXT, flags,
    keywords, INTERNALDATEs, sizes and subscriptions as Dovecot showed, and a
    HIGHESTMODSEQ above Dovecot's;
  * mbsync, pointed at the gateway with the same user name and password, finds
    nothing to download and no UIDVALIDITY change: its Maildir and its state are
    unchanged; and a message delivered afterwards is the one it fetches.
Dovecot and the import run in a zone with summer time (Europe/Berlin), so the
INTERNALDATEs compared carry the offset Dovecot really shows.
"""

import hashlib
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
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MBSYNC = "/usr/bin/mbsync"
DOVECOT_IMAP = "/usr/lib/dovecot/imap"
ZONE = "Europe/Berlin"

USER = "mover"
PASSWORD = "moving-day-pw"


def message(n, folder="INBOX"):
    return (b"From: Old Server <old@example.org>\r\n"
            b"To: Mover <mover@example.org>\r\n"
            b"Subject: migration %d in %s\r\n"
            b"Message-ID: <migration-%d-%s@example.org>\r\n"
            b"\r\n"
            b"Body of message %d.\r\n" % (n, folder.encode(), n, folder.encode(), n))


def mailbox_view(imap, mailbox):
    """What a client caches of a mailbox: STATUS values and, per UID, the flags
    (\\Recent left out), INTERNALDATE and RFC822.SIZE."""
    typ, data = imap.status(mailbox, "(UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ)")
    assert typ == "OK", data
    status = dict(re.findall(r"(UIDVALIDITY|UIDNEXT|MESSAGES|HIGHESTMODSEQ) (\d+)",
                             data[0].decode()))
    typ, data = imap.select(mailbox, readonly=True)
    assert typ == "OK", data
    messages = {}
    typ, data = imap.uid("FETCH", "1:*", "(FLAGS INTERNALDATE RFC822.SIZE)")
    assert typ == "OK", data
    for item in data:
        if item is None:
            continue
        line = item.decode() if isinstance(item, bytes) else item[0].decode()
        uid = int(re.search(r"UID (\d+)", line).group(1))
        flags = set(re.search(r"FLAGS \(([^)]*)\)", line).group(1).split()) - {"\\Recent"}
        # RFC 3501 date-day-fixed is " 2" or "02": Dovecot writes the one, the
        # gateway the other. The instant and the zone offset must be the same.
        date = re.search(r'INTERNALDATE "([^"]+)"', line).group(1).strip().rjust(26, "0")
        size = int(re.search(r"RFC822.SIZE (\d+)", line).group(1))
        messages[uid] = (frozenset(flags), date, size)
    imap.close()
    return {"uidvalidity": int(status["UIDVALIDITY"]), "uidnext": int(status["UIDNEXT"]),
            "messages": messages, "highestmodseq": int(status["HIGHESTMODSEQ"])}


def subscribed(imap):
    typ, data = imap.lsub('""', "*")
    assert typ == "OK", data
    names = set()
    for item in data:
        if item:
            names.add(re.search(rb'"[^"]*" "?([^"]*)"?$', item).group(1).decode())
    return names


def tree_digest(root):
    """{relative path: sha256 of content} of every file below root."""
    out = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


class DovecotMigrationTest(unittest.TestCase):
    def setUp(self):
        for tool in (MBSYNC, DOVECOT_IMAP):
            self.assertTrue(os.access(tool, os.X_OK),
                            "%s is missing: tools/install-deps.sh installs it" % tool)
        self.work = tempfile.mkdtemp(prefix="dovecot-migration-", dir="/tmp")
        os.chmod(self.work, 0o755)
        self.system = None
        # Dovecot's side: its configuration, its Maildir++ tree (INBOX at the root,
        # ".Work.Projects" for Work/Projects).
        self.old = os.path.join(self.work, "dovecot")
        for sub in ("mail", "run", "state"):
            os.makedirs(os.path.join(self.old, sub))
        self.maildir = os.path.join(self.old, "mail")
        conf = os.path.join(self.old, "dovecot.conf")
        with open(conf, "w") as f:
            f.write("base_dir = %s/run\nstate_dir = %s/state\nlog_path = /dev/stderr\n"
                    "ssl = no\nmail_location = maildir:%s\n"
                    "namespace inbox {\n  inbox = yes\n  separator = /\n}\n"
                    % (self.old, self.old, self.maildir))
        command = [DOVECOT_IMAP, "-c", conf]
        user = pwd.getpwuid(os.getuid()).pw_name
        if os.getuid() == 0:
            # Dovecot refuses to serve mail as root.
            nobody = pwd.getpwnam("nobody")
            for root, dirs, files in os.walk(self.old):
                for name in [root] + [os.path.join(root, x) for x in dirs + files]:
                    os.chown(name, nobody.pw_uid, nobody.pw_gid)
            command = ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                       "--clear-groups"] + command
            user = "nobody"
        command = ["env", "-i", "PATH=/usr/bin:/bin", "TZ=" + ZONE, "USER=" + user,
                   "HOME=" + self.old] + command
        self.tunnel = " ".join(shlex.quote(part) for part in command)
        # mbsync's side: its Maildir and state.
        self.near = os.path.join(self.work, "near")
        os.makedirs(self.near)

    def tearDown(self):
        if self.system:
            self.system.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def dovecot(self):
        return imaplib.IMAP4_stream(self.tunnel + " 2>/dev/null")

    def gateway_client(self):
        client = imaplib.IMAP4_SSL("127.0.0.1", self.gateway.imaps_port,
                                   ssl_context=ssl.create_default_context(
                                       cafile=self.system.cert),
                                   timeout=30)
        client.login(USER, PASSWORD)
        return client

    def write_mbsync_config(self, account):
        path = os.path.join(self.work, "mbsyncrc")
        with open(path, "w") as f:
            f.write("IMAPAccount old\n%s\n\n"
                    "IMAPStore far\nAccount old\n\n"
                    "MaildirStore near\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\n"
                    "Channel move\nFar :far:\nNear :near:\nPatterns *\nCreate Near\n"
                    "Sync Pull\nSyncState *\n"
                    % (account, self.near, self.near))
        return path

    def mbsync(self, account):
        config = self.write_mbsync_config(account)
        result = subprocess.run([MBSYNC, "-V", "-c", config, "-a"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                                env={"PATH": "/usr/bin:/bin", "HOME": self.work})
        transcript = result.stdout.decode("utf-8", "replace")
        self.assertEqual(result.returncode, 0, "mbsync failed:\n" + transcript[-4000:])
        self.assertNotRegex(transcript, r"(?i)uidvalidity.*chang|chang.*uidvalidity",
                            transcript[-4000:])
        return transcript

    def admin(self, *args, stdin=None):
        env = dict(os.environ, MAILBOX_SERVER=self.system.service_target, TZ=ZONE,
                   MAILBOX_ADMIN_TOKEN_FILE=os.path.join(self.system.dir, "data",
                                                         "admin.token"))
        return subprocess.run([self.system.admin_bin] + list(args), env=env, input=stdin,
                              capture_output=True, text=True, timeout=300)

    def populate_dovecot(self):
        """Mail as a user's clients leave it on Dovecot."""
        imap = self.dovecot()
        for name in ("Work/Projects", "Sent", "Entw&APw-rfe"):
            typ, data = imap.create(name)
            self.assertEqual(typ, "OK", data)
        for name in ("Work/Projects", "Sent", "Entw&APw-rfe"):
            imap.subscribe(name)
        # INBOX: dates in winter and in summer, so the zone's offset differs.
        dates = ['"15-Jan-2024 10:00:00 +0000"', None, '"15-Jul-2024 10:00:00 +0000"',
                 '"01-Mar-2024 23:30:00 -0500"', None, None, None]
        flags = [None, r"(\Seen)", r"(\Seen \Flagged $Work)", r"(Custom \Draft)", None,
                 r"(\Answered $Work)", None]
        for n in range(7):
            typ, data = imap.append("INBOX", flags[n], dates[n], message(n))
            self.assertEqual(typ, "OK", data)
        for n in range(3):
            imap.append("Work/Projects", r"(\Seen $Project)", None, message(n, "Projects"))
        imap.append("Sent", r"(\Seen)", None, message(0, "Sent"))
        # Flags set later, an expunge in the middle and one at the end (UIDNEXT
        # then stays above every message).
        imap.select("INBOX")
        imap.uid("STORE", "5", "+FLAGS", r"($Later \Seen)")
        imap.uid("STORE", "2,7", "+FLAGS", r"(\Deleted)")
        imap.expunge()
        imap.uid("STORE", "1", "+FLAGS", r"(\Deleted)")  # stays, marked
        imap.unselect()  # CLOSE would expunge it
        imap.select("Work/Projects")
        imap.uid("STORE", "2", "+FLAGS", r"(\Deleted)")
        imap.expunge()
        imap.close()
        view = {}
        for name in ("INBOX", "Work/Projects", "Sent", "Entw&APw-rfe"):
            view[name] = mailbox_view(imap, name)
        subscriptions = subscribed(imap)
        imap.logout()
        return view, subscriptions

    def test_import_keeps_uids_flags_and_sync_state(self):
        before, subscriptions = self.populate_dovecot()
        self.assertEqual(sorted(before["INBOX"]["messages"]), [1, 3, 4, 5, 6])
        self.assertEqual(before["INBOX"]["uidnext"], 8)
        self.assertEqual(sorted(before["Work/Projects"]["messages"]), [1, 3])
        self.assertEqual(subscriptions, {"Work/Projects", "Sent", "Entw&APw-rfe"})
        # Dovecot shows dates in its zone: summer and winter offsets.
        dates = {uid: m[1] for uid, m in before["INBOX"]["messages"].items()}
        self.assertTrue(dates[1].endswith("+0100"), dates)
        self.assertTrue(any(d.endswith("+0200") for d in dates.values()), dates)

        # mbsync caches the account from Dovecot.
        transcript = self.mbsync("Tunnel \"%s\"" % self.tunnel)
        cached = tree_digest(self.near)
        inbox_files = [p for p in cached if p.startswith("INBOX/cur/")
                       or p.startswith("INBOX/new/")]
        self.assertEqual(len(inbox_files), 5, transcript)
        with open(os.path.join(self.near, "INBOX", ".mbsyncstate")) as f:
            state = f.read()
        self.assertIn("FarUidValidity %d" % before["INBOX"]["uidvalidity"], state)

        # Dovecot is done (its tunnel sessions ended); our service takes over.
        self.system = harness.System("dovecot-migration", base=self.work)
        self.system.start_service()
        result = self.admin("import", "dovecot", USER, self.maildir, "--password-stdin",
                            "--batch=2", stdin=PASSWORD + "\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("created user %s" % USER, result.stdout)
        self.assertIn("imported INBOX: 5 messages (uidvalidity %d, uidnext 8)"
                      % before["INBOX"]["uidvalidity"], result.stdout)
        self.assertIn("imported Work/Projects: 2 messages (uidvalidity %d, uidnext 4)"
                      % before["Work/Projects"]["uidvalidity"], result.stdout)
        self.assertIn("imported 4 folders, 8 messages, 3 subscriptions for %s" % USER,
                      result.stdout)
        self.assertIn("progress: INBOX 2/5", result.stderr)

        # A second run is refused before it changes anything.
        again = self.admin("import", "dovecot", USER, self.maildir)
        self.assertEqual(again.returncode, 1)
        self.assertIn("already has messages in INBOX (UIDNEXT 8)", again.stderr)
        self.assertIn("Nothing was changed", again.stderr)

        self.gateway = self.system.start_gateway()
        imap = self.gateway_client()
        for name, old in before.items():
            new = mailbox_view(imap, name)
            self.assertEqual(new["uidvalidity"], old["uidvalidity"], name)
            self.assertEqual(new["uidnext"], old["uidnext"], name)
            self.assertEqual(new["messages"], old["messages"], name)
            # HIGHESTMODSEQ never goes down for a CONDSTORE client (RFC 7162 §3.1.1).
            self.assertGreater(new["highestmodseq"], old["highestmodseq"], name)
        self.assertEqual(subscribed(imap), subscriptions)
        imap.logout()

        # mbsync, now at the gateway: nothing to download, no UIDVALIDITY change,
        # its Maildir and state untouched.
        # "localhost": mbsync 1.4 matches the certificate's DNS names, not its IP.
        account = ("Host localhost\nPort %d\nUser %s\nPass %s\nSSLType IMAPS\n"
                   "CertificateFile %s\nAuthMechs LOGIN"
                   % (self.gateway.imaps_port, USER, PASSWORD, self.system.cert))
        transcript = self.mbsync(account)
        self.assertEqual(tree_digest(self.near), cached, transcript)

        # And it is really talking to the gateway: a new message is the one it fetches.
        imap = self.gateway_client()
        typ, data = imap.append("INBOX", None, None, message(99))
        self.assertEqual(typ, "OK", data)
        self.assertIn(b"APPENDUID %d 8]" % before["INBOX"]["uidvalidity"], data[0])
        imap.logout()
        transcript = self.mbsync(account)
        after = tree_digest(self.near)
        added = [p for p in after if p not in cached and not p.endswith(".mbsyncstate")
                 and ".mbsyncstate" not in p]
        self.assertEqual(len(added), 1, (added, transcript))
        with open(os.path.join(self.near, added[0]), "rb") as f:
            self.assertIn(b"migration 99 in INBOX", f.read())
        self.assertTrue(self.gateway.alive(), self.gateway.log()[-3000:])

    def test_malformed_uidlist_is_refused_with_its_line(self):
        imap = self.dovecot()
        imap.append("INBOX", None, None, message(1))
        imap.logout()
        path = os.path.join(self.maildir, "dovecot-uidlist")
        with open(path) as f:
            lines = f.read().splitlines()
        lines.append("1 :duplicate-uid")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.system = harness.System("dovecot-malformed", base=self.work)
        self.system.start_service()
        result = self.admin("import", "dovecot", USER, self.maildir, "--password", PASSWORD)
        self.assertEqual(result.returncode, 1)
        self.assertIn("dovecot-uidlist line 3: UID 1 is not above the UID before it (1)",
                      result.stderr)
        # Nothing was changed: not even the user was created.
        users = self.admin("user", "list")
        self.assertNotIn(USER, users.stdout)


if __name__ == "__main__":
    unittest.main()
