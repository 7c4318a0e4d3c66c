"""The mailbox service as replicas on one PostgreSQL database, end to end: real
replicas, real gateways, a real PostgreSQL server, real IMAP over TLS."""

import hashlib
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from cluster import Cluster, Partition  # noqa: E402
import harness  # noqa: E402
from raw_client import ConnectionClosed, RawClient  # noqa: E402

CLUSTER = None
PASSWORD = "secret-pw"


def setUpModule():
    global CLUSTER
    CLUSTER = Cluster()
    CLUSTER.start_replica()
    CLUSTER.start_replica()


def tearDownModule():
    if CLUSTER:
        CLUSTER.stop()


def connect(gateway, user, cluster=None):
    """A logged-in client through `gateway` of `cluster` (the module's by default)."""
    cert = (cluster or CLUSTER).system.cert
    client = RawClient(gateway.imaps_port, "tls", cafile=cert, timeout=30)
    client.login(user, PASSWORD)
    return client


def message(subject):
    return (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: %s\r\n"
            b"Message-ID: <%s@example.org>\r\n\r\nbody of %s\r\n"
            % (subject.encode(), subject.encode(), subject.encode()))


def append(client, mailbox, body):
    """Returns the tagged response line (OK or NO)."""
    tag = client.tag()
    client.send(b"%s APPEND %s {%d+}\r\n%s\r\n" % (tag.encode(), mailbox.encode(), len(body), body))
    _, tagged = client.read_tagged(tag, timeout=60)
    return tagged


_users = 0


def new_user(prefix):
    global _users
    _users += 1
    name = "%s%d" % (prefix, _users)
    CLUSTER.admin("user", "add", name, "--password", PASSWORD)
    return name


def subjects_in(client, mailbox):
    """Subject of every message in the mailbox, in UID order, with its UID."""
    client.ok("SELECT %s" % mailbox)
    untagged = client.ok("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    out = []
    for line in untagged:
        uid = re.search(rb"UID (\d+)", line)
        subject = re.search(rb"Subject: ([^\r\n]+)", line)
        if uid and subject:
            out.append((int(uid.group(1)), subject.group(1).decode()))
    return out


class AcrossReplicasTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gateway_a = CLUSTER.start_gateway(replicas=[0])
        cls.gateway_b = CLUSTER.start_gateway(replicas=[1])

    def test_append_through_one_replica_reaches_idle_on_the_other(self):
        user = new_user("idle")
        watcher = connect(self.gateway_b, user)
        watcher.ok("SELECT INBOX")
        watcher.send(b"i1 IDLE\r\n")
        watcher.expect_continuation()
        writer = connect(self.gateway_a, user)
        started = time.monotonic()
        self.assertIn(b" OK ", append(writer, "INBOX", message("across")))
        watcher.read_lines_until(lambda line: line == b"* 1 EXISTS", timeout=10)
        self.assertLess(time.monotonic() - started, 10)
        watcher.send(b"DONE\r\n")
        watcher.read_tagged("i1")
        writer.close()
        watcher.close()

    def test_mailbox_list_changes_through_one_replica_reach_notify_on_the_other(self):
        # RFC 5465 §5.4, §5.5: the list events cross replicas with the pg_notify
        # payloads of the other events.
        user = new_user("list")
        watcher = connect(self.gateway_b, user)
        watcher.ok("NOTIFY SET (PERSONAL (MessageNew MessageExpunge MailboxName "
                   "SubscriptionChange))")
        watcher.send(b"i1 IDLE\r\n")
        watcher.expect_continuation()
        writer = connect(self.gateway_a, user)
        writer.ok("CREATE Across")
        writer.ok("SUBSCRIBE Across")
        writer.ok("RENAME Across Moved")
        self.assertIn(b" OK ", append(writer, "Moved", message("moved")))
        wanted = [b'* LIST () "/" Across', b'* LIST (\\Subscribed) "/" Across',
                  b'* LIST () "/" Moved ("OLDNAME" (Across))']
        lines = watcher.read_lines_until(lambda line: line.startswith(b"* STATUS Moved "),
                                         timeout=10)
        self.assertEqual([line for line in lines if line.startswith(b"* LIST ")], wanted)
        watcher.send(b"DONE\r\n")
        watcher.read_tagged("i1")
        writer.close()
        watcher.close()

    def test_revise_through_the_other_replica_reaches_every_session(self):
        user = new_user("revise")
        writer = connect(self.gateway_a, user)
        self.assertIn(b" OK ", append(writer, "INBOX", message("first version")))
        watcher = connect(self.gateway_b, user)
        watcher.ok("SELECT INBOX")
        watcher.send(b"i1 IDLE\r\n")
        watcher.expect_continuation()
        with tempfile.NamedTemporaryFile(suffix=".eml") as revised:
            revised.write(message("second version"))
            revised.flush()
            output = CLUSTER.admin("revise", user, "INBOX", "1", revised.name, replica=1)
        self.assertRegex(output, r"revised UID 1 -> 2")
        seen = set()

        def told(line):
            if line == b"* 1 EXPUNGE" or re.match(rb"^\* \d+ EXISTS$", line):
                seen.add(b"EXPUNGE" if b"EXPUNGE" in line else b"EXISTS")
            return len(seen) == 2

        watcher.read_lines_until(told, timeout=10)  # the new UID, and the old one gone
        watcher.send(b"DONE\r\n")
        watcher.read_tagged("i1")
        self.assertEqual(subjects_in(watcher, "INBOX"), [(2, "second version")])
        self.assertEqual(subjects_in(writer, "INBOX"), [(2, "second version")])
        writer.close()
        watcher.close()

    def test_concurrent_writers_on_two_replicas_get_gap_free_uids(self):
        user = new_user("uids")
        per_client = 15
        results = {}

        def run(name, gateway):
            client = connect(gateway, user)
            results[name] = [append(client, "INBOX", message("%s-%d" % (name, i)))
                             for i in range(per_client)]
            client.close()

        threads = [threading.Thread(target=run, args=("w%d" % i, gateway))
                   for i, gateway in enumerate([self.gateway_a, self.gateway_b] * 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for name, tagged in results.items():
            self.assertTrue(all(b" OK " in t for t in tagged), (name, tagged))
        reader = connect(self.gateway_a, user)
        found = subjects_in(reader, "INBOX")
        self.assertEqual([uid for uid, _ in found], list(range(1, 4 * per_client + 1)))
        self.assertEqual(len({subject for _, subject in found}), 4 * per_client)
        reader.close()


def watch_until_told(watcher, count):
    """Reads a session in IDLE (tag i1) until it is told of at least `count`
    messages, then ends the IDLE and closes it. (A write whose COMMIT was cut off is
    reported failed but may be stored, so there may be more than acknowledged.)"""
    def told_all(line):
        told = re.fullmatch(rb"\* (\d+) EXISTS", line)
        return told is not None and int(told.group(1)) >= count
    watcher.read_lines_until(told_all, timeout=60)
    watcher.send(b"DONE\r\n")
    watcher.read_tagged("i1")
    watcher.close()


class AppendsUnderOutage:
    """For tests of a cluster (`self.cluster`; the module's by default) under
    appends from many clients while something fails."""

    cluster = None

    def run_load(self, user, gateway, disrupt, clients=6, seconds=8.0):
        acknowledged = []
        lock = threading.Lock()
        stop = time.monotonic() + seconds

        def run(index):
            client = None
            i = 0
            while time.monotonic() < stop:
                try:
                    if client is None:
                        client = connect(gateway, user, self.cluster)
                    subject = "c%d-%d" % (index, i)
                    i += 1
                    tagged = append(client, "INBOX", message(subject))
                    if b" OK " in tagged:
                        with lock:
                            acknowledged.append(subject)
                except (ConnectionClosed, OSError, TimeoutError, AssertionError):
                    # The connection broke, or LOGIN was refused while the store was
                    # away (NO [UNAVAILABLE]): as a client would, log in again.
                    if client is not None:
                        client.close()
                    client = None
                    time.sleep(0.2)
            if client is not None:
                client.close()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        time.sleep(seconds / 3)
        disrupt()
        for thread in threads:
            thread.join()
        return acknowledged

    def check(self, user, gateway, acknowledged):
        self.assertGreater(len(acknowledged), 20)
        deadline = time.monotonic() + 60
        while True:
            try:
                reader = connect(gateway, user, self.cluster)
                found = [subject for _, subject in subjects_in(reader, "INBOX")]
                reader.close()
                break
            except (ConnectionClosed, OSError, TimeoutError, AssertionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        counts = {}
        for subject in found:
            counts[subject] = counts.get(subject, 0) + 1
        missing = [s for s in acknowledged if s not in counts]
        doubled = [s for s, n in counts.items() if n > 1]
        self.assertEqual(missing, [])
        self.assertEqual(doubled, [])
        return len(found)



class OutageTest(AppendsUnderOutage, unittest.TestCase):
    """Appends from many clients through a gateway on both replicas while a replica
    is killed, or the database restarted: every APPEND answered OK is there
    afterwards exactly once, and the clients go on."""

    def test_kill_9_of_a_replica_under_appends(self):
        user = new_user("kill")
        victim = CLUSTER.start_replica()
        index = CLUSTER.replicas.index(victim)
        # The gateway's change feeds (one per worker) are spread over both replicas:
        # one on the victim moves to the survivor and resumes from its last MODSEQ,
        # and the session in IDLE is told of every APPEND all the same.
        gateway = CLUSTER.start_gateway(replicas=[index, 0])
        watcher = connect(gateway, user)
        watcher.ok("SELECT INBOX")
        watcher.send(b"i1 IDLE\r\n")
        watcher.expect_continuation()
        acknowledged = self.run_load(user, gateway, lambda: CLUSTER.kill_replica(index))
        watch_until_told(watcher, len(acknowledged))
        stored = self.check(user, gateway, acknowledged)
        print("kill -9 of a replica: %d APPENDs acknowledged, %d stored, none lost or doubled"
              % (len(acknowledged), stored))

    def test_an_idle_session_hears_changes_made_after_a_database_restart(self):
        """The replicas' listening connections drop with the database: they end
        every change feed, and the gateway subscribes again from its last MODSEQ."""
        user = new_user("resume")
        gateway = CLUSTER.start_gateway(replicas=[0, 1])
        watcher = connect(gateway, user)
        watcher.ok("SELECT INBOX")
        watcher.send(b"i1 IDLE\r\n")
        watcher.expect_continuation()
        CLUSTER.postgres.restart()
        deadline = time.monotonic() + 60
        while True:
            try:
                writer = connect(gateway, user)
                tagged = append(writer, "INBOX", message("after the restart"))
                writer.close()
                if b" OK " in tagged:
                    break
            except (ConnectionClosed, OSError, TimeoutError, AssertionError):
                pass
            self.assertLess(time.monotonic(), deadline, "no APPEND succeeded after the restart")
            time.sleep(0.5)
        watcher.read_lines_until(lambda line: line == b"* 1 EXISTS", timeout=30)
        watcher.send(b"DONE\r\n")
        watcher.read_tagged("i1")
        self.assertEqual([s for _, s in subjects_in(watcher, "INBOX")], ["after the restart"])
        watcher.close()

    def test_database_restart_under_appends(self):
        user = new_user("restart")
        gateway = CLUSTER.start_gateway(replicas=[0, 1])
        replicas = CLUSTER.replicas[:2]
        before = [replica.metrics() for replica in replicas]
        acknowledged = self.run_load(user, gateway, CLUSTER.postgres.restart)
        stored = self.check(user, gateway, acknowledged)
        after = [replica.metrics() for replica in replicas]
        print("PostgreSQL restart: %d APPENDs acknowledged, %d stored, none lost or doubled"
              % (len(acknowledged), stored))

        # What the replicas' metrics say about it.
        def moved(key):
            return sum(a.get(key, 0) - b.get(key, 0) for a, b in zip(after, before))

        committed = moved('imapd_mailbox_store_transactions_total{outcome="committed"}')
        retried = moved('imapd_mailbox_store_transactions_total{outcome="retried"}')
        print("replicas' metrics: %d transactions committed, %d retried" % (committed, retried))
        # Every acknowledged APPEND is a committed write transaction (logins and
        # mailbox creation add more).
        self.assertGreaterEqual(committed, len(acknowledged))
        # The appends in flight while the database was away were run again.
        self.assertGreater(retried, 0)
        self.assertGreater(moved("imapd_mailbox_store_operation_duration_seconds_count"
                                 '{operation="Append"}'), 0)
        for replica in after:
            # At rest: nothing lent or waited for; the pool reopened after the restart
            # and stays within --postgres-max-connections.
            self.assertEqual(replica["imapd_mailbox_postgres_pool_in_use_connections"], 0)
            self.assertEqual(replica["imapd_mailbox_postgres_pool_waiting_calls"], 0)
            self.assertGreaterEqual(replica["imapd_mailbox_postgres_pool_open_connections"], 1)
            self.assertLessEqual(replica["imapd_mailbox_postgres_pool_open_connections"], 16)


class HealthTest(unittest.TestCase):
    """A replica that loses the database while the others keep it says NOT_SERVING
    to health checks; the gateway then sends every call to the others, so clients
    see no error at all. When it reaches the database again it serves again."""

    def wait_for_log(self, replica_index, text, after):
        path = os.path.join(CLUSTER.dir, "replica%d.log" % replica_index)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with open(path, errors="replace") as f:
                if text in f.read()[after:]:
                    return
            time.sleep(0.1)
        self.fail("replica %d did not log %r" % (replica_index, text))

    def log_size(self, replica_index):
        return os.path.getsize(os.path.join(CLUSTER.dir, "replica%d.log" % replica_index))

    def test_a_replica_cut_off_from_the_database_gets_no_calls(self):
        user = new_user("health")
        partition = Partition(CLUSTER.postgres)
        try:
            cut = CLUSTER.start_replica(conninfo=partition.conninfo)
            index = CLUSTER.replicas.index(cut)
            gateway = CLUSTER.start_gateway(replicas=[0, index])
            client = connect(gateway, user)
            for i in range(10):
                self.assertIn(b" OK ", append(client, "INBOX", message("before %d" % i)))
            mark = self.log_size(index)
            self.assertEqual(cut.readiness(), 200)
            self.assertEqual(cut.metrics()["imapd_mailbox_ready"], 1)
            partition.cut()
            self.wait_for_log(index, '"event":"store_unavailable"', mark)
            # What a load balancer or Kubernetes probe sees: the cut-off replica is not
            # ready, the other one is.
            self.assertEqual(cut.readiness(), 503)
            self.assertEqual(cut.metrics()["imapd_mailbox_ready"], 0)
            self.assertEqual(CLUSTER.replicas[0].readiness(), 200)
            time.sleep(0.5)  # the gateway's health watch hears it
            # Without health checks about half of these would reach the cut-off
            # replica and fail (writes are not retried).
            for i in range(40):
                self.assertIn(b" OK ", append(client, "INBOX", message("during %d" % i)))
                client.ok("NOOP")
            other = connect(gateway, user)
            self.assertEqual(len(subjects_in(other, "INBOX")), 50)
            other.close()
            mark = self.log_size(index)
            partition.heal()
            self.wait_for_log(index, '"event":"store_healthy"', mark)
            self.assertEqual(cut.readiness(), 200)
            self.assertEqual(cut.metrics()["imapd_mailbox_ready"], 1)
            for i in range(10):
                self.assertIn(b" OK ", append(client, "INBOX", message("after %d" % i)))
            client.close()
        finally:
            partition.close()


class FailoverTest(AppendsUnderOutage, unittest.TestCase):
    """PostgreSQL fails over to its synchronous standby under appends: the primary
    stops at once (as if its machine died) and the standby is promoted. The
    replicas, which were given both servers, reconnect to the new primary; every
    APPEND answered OK is there exactly once, and a session in IDLE hears changes
    committed after the failover."""

    def test_failover_to_the_standby_under_appends(self):
        cluster = Cluster("failover", standby=True)
        try:
            cluster.start_replica()
            cluster.start_replica()
            gateway = cluster.start_gateway()
            user = "failover"
            cluster.admin("user", "add", user, "--password", PASSWORD)
            watcher = RawClient(gateway.imaps_port, "tls", cafile=cluster.system.cert,
                                timeout=30)
            watcher.login(user, PASSWORD)
            watcher.ok("SELECT INBOX")
            watcher.send(b"i1 IDLE\r\n")
            watcher.expect_continuation()

            def fail_over():
                cluster.postgres.stop()
                cluster.standby.promote()

            self.cluster = cluster
            acknowledged = self.run_load(user, gateway, fail_over)
            # The IDLE session heard every APPEND, those after the failover too.
            watch_until_told(watcher, len(acknowledged))
            stored = self.check(user, gateway, acknowledged)
            self.assertEqual(cluster.standby.query("SELECT pg_is_in_recovery()"), "f")
            print("failover to the standby: %d APPENDs acknowledged, %d stored, none lost or "
                  "doubled" % (len(acknowledged), stored))
        finally:
            cluster.stop()


class RunClusterScriptTest(unittest.TestCase):
    """tools/run-cluster.sh, as a person trying the topology runs it: it prints how
    to connect, a client IDLE on one gateway hears an APPEND through the other, and
    SIGTERM stops everything, PostgreSQL included."""

    def test_the_script_starts_a_working_topology_and_stops_it(self):
        import signal
        import subprocess
        script = harness.runfile("tools/run-cluster.sh")
        if not os.path.exists(script):  # by hand, outside Bazel: the source tree's
            script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                  "tools", "run-cluster.sh")
        work = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        # Away from the script's defaults (a person's own run) and from the ephemeral
        # ports other tests bind.
        offset = 1000 + os.getpid() % 100 * 10
        env = dict(os.environ, IMAPD_CLUSTER_DIR=os.path.join(work, "cluster"),
                   IMAPD_BIN_DIR=os.path.dirname(os.path.dirname(
                       harness.runfile("gateway/imap-gateway"))),
                   IMAPD_CLUSTER_PORT_OFFSET=str(offset))
        script_process = subprocess.Popen(["bash", script], env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        try:
            output = b""
            deadline = time.monotonic() + 120
            while b"Ctrl-C stops everything" not in output:
                self.assertLess(time.monotonic(), deadline, output.decode(errors="replace"))
                line = script_process.stdout.readline()
                self.assertTrue(line, "the script ended: " + output.decode(errors="replace"))
                output += line
            self.assertIn(b"user / password demo / demo", output)
            cert = os.path.join(work, "cluster", "tls-cert.pem")
            ports = (9993 + offset, 9994 + offset)
            self.assertIn(("127.0.0.1:%d and 127.0.0.1:%d" % ports).encode(), output)

            def login(port):
                deadline = time.monotonic() + 30
                while True:
                    try:
                        client = RawClient(port, "tls", cafile=cert, timeout=30)
                        client.login("demo", "demo")
                        return client
                    except (ConnectionClosed, OSError, AssertionError):
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)

            watcher = login(ports[0])
            watcher.ok("SELECT INBOX")
            watcher.send(b"i1 IDLE\r\n")
            watcher.expect_continuation()
            writer = login(ports[1])
            self.assertIn(b" OK ", append(writer, "INBOX", message("through the other")))
            writer.close()
            watch_until_told(watcher, 1)
        finally:
            os.killpg(script_process.pid, signal.SIGTERM)
            script_process.wait(timeout=120)
            script_process.stdout.close()
        # Nothing is left running: no replica, gateway or PostgreSQL of this script
        # (whose directory, when run as root, is one under /tmp named after it).
        cluster_dir = os.path.join(work, "cluster")
        pg_dir = "/tmp/imapd-cluster-pg-" + hashlib.md5(cluster_dir.encode()).hexdigest()[:8]
        try:
            for pattern in (cluster_dir, pg_dir):
                leftovers = subprocess.run(["pgrep", "-f", pattern], capture_output=True,
                                           text=True).stdout.split()
                self.assertEqual(leftovers, [], pattern)
        finally:
            shutil.rmtree(pg_dir, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
