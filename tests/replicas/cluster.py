"""Starts the multi-replica topology on one machine: a private PostgreSQL server
(initdb + pg_ctl in a temporary directory, Unix socket only), mailbox-service
replicas on it (--backend=postgres), and IMAP gateways. Replicas share the admin and
gateway tokens and the session-token keys, as a deployment distributes them. Everything listens on 127.0.0.1
or in the temporary directory, and stop() ends it all."""

import glob
import os
import pwd
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import harness  # noqa: E402

PG_PORT = 5432  # names the socket file; the directory is private


def pg_bin_dir():
    for path in sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True):
        return os.path.dirname(path)
    raise RuntimeError("no PostgreSQL server binaries: install postgresql-15 "
                       "(tools/install-deps.sh does)")


class Postgres:
    """A private server. With `primary`, a streaming standby of it (pg_basebackup),
    read-only until promote()."""

    def __init__(self, base, primary=None):
        self.bin = pg_bin_dir()
        # Under /tmp: the server's user must reach it and socket paths stay short.
        self.dir = tempfile.mkdtemp(prefix="imapd-pg-", dir="/tmp")
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        if primary is None:
            self._run("%s/initdb -D %s/data -U postgres --auth=trust --no-sync -E UTF8 "
                      "--locale=C.UTF-8 > %s/initdb.log 2>&1" % (self.bin, self.dir, self.dir))
        else:
            self._run("%s/pg_basebackup -h %s -p %d -U postgres -D %s/data -R -X stream -c fast "
                      "> %s/basebackup.log 2>&1" % (self.bin, primary.dir, PG_PORT, self.dir,
                                                    self.dir))
        self.running = False
        self.start()
        if primary is None:
            self._run("%s/createdb -h %s -p %d -U postgres mail" % (self.bin, self.dir, PG_PORT))
        self.conninfo = "host=%s port=%d dbname=mail user=postgres" % (self.dir, PG_PORT)

    def query(self, sql):
        """Runs `sql` in database mail; returns psql's unaligned output."""
        command = ["%s/psql" % self.bin, "-h", self.dir, "-p", str(PG_PORT), "-U", "postgres",
                   "-d", "mail", "-Atc", sql]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--"] + command
        return subprocess.run(command, check=True, cwd="/", capture_output=True,
                              text=True).stdout.strip()

    def promote(self):
        self._run("%s/pg_ctl -D %s/data -w promote > /dev/null" % (self.bin, self.dir))

    def _run(self, command):
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", "sh", "-c", command]
        else:
            command = ["sh", "-c", command]
        subprocess.run(command, check=True, cwd="/")  # the server's user may not enter ours

    def start(self):
        self._run("%s/pg_ctl -D %s/data -l %s/server.log -w -t 60 -o \"-k %s -p %d "
                  "-c listen_addresses= -c max_connections=300\" start > /dev/null"
                  % (self.bin, self.dir, self.dir, self.dir, PG_PORT))
        self.running = True

    def stop(self, mode="immediate"):
        if self.running:
            self._run("%s/pg_ctl -D %s/data -m %s -w stop > /dev/null" % (self.bin, self.dir, mode))
            self.running = False

    def restart(self):
        self.stop()
        self.start()

    def remove(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class Replica:
    def __init__(self, process, target, data, http_port):
        self.process = process
        self.target = target
        self.data = data
        self.http_port = http_port  # GET /healthz, /readyz, /metrics

    def metrics(self):
        """{'name{labels}': value} of the replica's /metrics."""
        return harness.scrape_metrics(self.http_port)[0]

    def readiness(self):
        """The HTTP status of the replica's /readyz."""
        return harness.http_get(self.http_port, "/readyz")[0]

    def alive(self):
        return self.process.poll() is None


class Cluster:
    def __init__(self, name="replicas", standby=False):
        base = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
        self.dir = os.path.join(base, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        # The gateways' certificate and binaries come from the single-node harness.
        self.system = harness.System(name + "-tls", base=base)
        self.postgres = Postgres(self.dir)
        self.conninfo = self.postgres.conninfo
        self.standby = None
        if standby:
            # A synchronous standby: a write is acknowledged once it is on both, so a
            # failover to the standby loses nothing acknowledged. The replicas try
            # both servers and use the one that accepts writes.
            self.standby = Postgres(self.dir, primary=self.postgres)
            self.postgres.query("ALTER SYSTEM SET synchronous_standby_names = '*'")
            self.postgres.query("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 60
            while self.postgres.query("SELECT sync_state FROM pg_stat_replication") != "sync":
                if time.monotonic() > deadline:
                    raise RuntimeError("the standby did not become synchronous")
                time.sleep(0.2)
            self.conninfo = ("host=%s,%s port=%d,%d dbname=mail user=postgres "
                             "target_session_attrs=read-write"
                             % (self.postgres.dir, self.standby.dir, PG_PORT, PG_PORT))
        self.replicas = []
        self.gateways = []

    def start_replica(self, *flags, conninfo=None):
        """A replica on the database (through `conninfo` if given), with `flags`."""
        index = len(self.replicas)
        data = os.path.join(self.dir, "replica%d" % index)
        os.makedirs(data, exist_ok=True)
        os.chmod(data, 0o700)
        if self.replicas:
            # One deployment, one set of tokens: every replica accepts the same
            # admin tool and gateways.
            for token in ("admin.token", "gateway.token", "session.key"):
                shutil.copy(os.path.join(self.replicas[0].data, token), os.path.join(data, token))
        port_file = os.path.join(data, "port")
        http_port_file = os.path.join(data, "http-port")
        for stale in (port_file, http_port_file):
            if os.path.exists(stale):
                os.remove(stale)
        with open(os.path.join(self.dir, "replica%d.log" % index), "a") as log:
            process = subprocess.Popen(
                [self.system.service_bin, "--listen=127.0.0.1:0", "--data-dir=" + data,
                 "--port-file=" + port_file, "--http-listen=127.0.0.1:0",
                 "--http-port-file=" + http_port_file, "--backend=postgres",
                 "--postgres=" + (conninfo or self.conninfo), "--postgres-max-connections=16",
                 harness.argon2_memory_flag(self.system.service_bin, 64), "--argon2-time-cost=1",
                 "--auth-user-free-failures=100000", "--auth-ip-free-failures=100000"]
                + list(flags), stdout=log, stderr=subprocess.STDOUT)
        harness._wait_for_file(port_file, process, "mailbox-service replica %d" % index)
        with open(port_file) as f:
            target = "127.0.0.1:%d" % int(f.read())
        harness._wait_for_file(http_port_file, process, "mailbox-service replica %d" % index)
        with open(http_port_file) as f:
            http_port = int(f.read())
        replica = Replica(process, target, data, http_port)
        self.replicas.append(replica)
        return replica

    def admin(self, *args, replica=0, stdin=None):
        env = dict(os.environ, MAILBOX_SERVER=self.replicas[replica].target,
                   MAILBOX_ADMIN_TOKEN_FILE=os.path.join(self.replicas[0].data, "admin.token"))
        result = subprocess.run([self.system.admin_bin] + list(args), env=env, input=stdin,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError("mailbox-admin %s: %s" % (" ".join(args), result.stderr))
        return result.stdout

    def start_gateway(self, *flags, replicas=None):
        """A gateway on the given replicas (indexes; all by default), with `flags`."""
        replicas = range(len(self.replicas)) if replicas is None else replicas
        self.system.service_target = ",".join(self.replicas[i].target for i in replicas)
        self.system.dir = self.dir
        gateway = self.system.start_gateway(
            *flags, store_token_file=os.path.join(self.replicas[0].data, "gateway.token"))
        self.gateways.append(gateway)
        return gateway

    def kill_replica(self, index):
        self.replicas[index].process.send_signal(signal.SIGKILL)
        self.replicas[index].process.wait(timeout=30)

    def stop(self):
        try:
            self.system.stop()
            for replica in self.replicas:
                if replica.alive():
                    replica.process.send_signal(signal.SIGTERM)
                    try:
                        replica.process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        replica.process.kill()
        finally:
            self.postgres.remove()
            if self.standby:
                self.standby.remove()


class Partition:
    """A TCP relay on 127.0.0.1 to the PostgreSQL server's Unix socket, for a replica
    that is to lose its database while the others keep it: cut() closes every relayed
    connection and refuses new ones; heal() accepts them again on the same port."""

    def __init__(self, postgres):
        self.target = os.path.join(postgres.dir, ".s.PGSQL.%d" % PG_PORT)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conninfo = "host=127.0.0.1 port=%d dbname=mail user=postgres" % self.port
        self.lock = threading.Lock()
        self.open = []
        self.cut_off = False
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.cut_off:
                    client.close()
                    continue
                server = socket.socket(socket.AF_UNIX)
                try:
                    server.connect(self.target)
                except OSError:
                    client.close()
                    continue
                self.open += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a, b):
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in selector.select():
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()

    def cut(self):
        with self.lock:
            self.cut_off = True
            for sock in self.open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.open = []

    def heal(self):
        with self.lock:
            self.cut_off = False

    def close(self):
        self.cut()
        self.listener.close()
