#!/usr/bin/env python3
"""The standard bench suite: runs every scenario against our system and, side
by side, against Dovecot, then writes results.json and a self-contained report.html.

Scenarios, each on loopback with the same client (imap-loadgen) and data on both sides:
  profiles   each load profile at 10, 100 and 1,000 clients over IMAPS: commands/s,
             latency percentiles, CPU seconds per 1,000 commands, peak memory;
  idle       1,000, 5,000 and 15,000 TLS connections in IDLE: memory per connection
             (a fresh front end for each count);
  push       5,000 clients in IDLE on one mailbox; one message appended over IMAP, then
             one revised (our Revise API; Dovecot has none, so there APPEND + UID
             EXPUNGE over IMAP): time until each client was told (p50, p99, max);
  transfer   a 50 MB APPEND and FETCH: MB/s and the front end's peak memory;
  login      login storm over TLS: handshakes + LOGIN per second.

Usage (bench/run.sh installs, builds and calls this):
  python3 bench/suite/run_suite.py [--out DIR] [--no-dovecot] [--smoke] [--only SCENARIO,...]
Everything it starts listens on 127.0.0.1 and is stopped before it exits; every phase
is bounded in time.
"""

import argparse
import concurrent.futures
import datetime
import imaplib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "tests", "replicas"))
import flamegraph  # noqa: E402
import harness  # noqa: E402
import procstat  # noqa: E402
import report  # noqa: E402

LOADGEN = harness.runfile("bench/loadgen/imap-loadgen")
PASSWORD = "secret-pw"
SCENARIOS = ("profiles", "flame", "idle", "push", "transfer", "login")
FLAME_PROFILE, FLAME_CLIENTS = "imaptest-persistent", 10
BASELINE = "imapd-baseline"
PROFILES = ("imaptest-persistent", "imaptest-default", "desktop", "webmail", "webmail-sort",
            "mobile", "ingest")
TRANSPORTS = ("tls", "plain")


def profile_path(name):
    srcdir = os.environ.get("TEST_SRCDIR")
    base = os.path.join(srcdir, "imapd") if srcdir else ROOT
    return os.path.join(base, "bench", "loadgen", "profiles", name + ".profile")


def log(message):
    print("bench: %s" % message, file=sys.stderr, flush=True)


def bench_message(subject):
    return ("From: bench <bench@example.test>\r\nTo: user1@example.test\r\n"
            "Subject: %s\r\nMessage-ID: <%s@bench.example.test>\r\n\r\n"
            "A message from the bench suite.\r\n" % (subject, subject.replace(" ", "."))).encode()


def imap_client(port):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=context, timeout=60)
    # imaplib writes a literal and its closing CRLF separately; without TCP_NODELAY the
    # CRLF waits for the server's delayed ACK (~40 ms), which the push figures would show.
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.login("user1", PASSWORD)
    return client


def append_uid(response):
    """The UID from an APPEND's [APPENDUID uidvalidity uid] (RFC 4315 §3)."""
    match = re.search(rb"APPENDUID \d+ (\d+)", b" ".join(r for r in response if r))
    if not match:
        raise RuntimeError("APPEND gave no APPENDUID: %r" % (response,))
    return int(match.group(1))


# The bench loads one gateway from a single loopback address with up to 15,000
# connections: the per-address cap (100) and the global cap (10,000) that protect a
# production gateway would refuse most of them. Plain IMAP profiles log in without
# STARTTLS (on loopback only), as Dovecot's bench configuration allows too.
GATEWAY_FLAGS = ("--max-connections=0", "--max-connections-per-ip=0",
                 "--allow-plaintext-auth")


class Imapd:
    """Our mailbox service and one gateway (2 workers, one per core)."""

    name = "imapd"
    memory_what = "gateway RSS"
    idle_settle_s = 3  # per-connection buffers return to their idle size

    def __init__(self, work, argon2_memory_kib, argon2_time_cost, name="imapd", bin_dir=None):
        """name/bin_dir: a second copy of our system from another build's binaries
        (--baseline-bin), run side by side under the same conditions."""
        self.name = name
        self.system = harness.System(name, base=work, bin_dir=bin_dir)
        self.system.start_service(harness.argon2_memory_flag(self.system.service_bin,
                                                             argon2_memory_kib),
                                  "--argon2-time-cost=%d" % argon2_time_cost)
        self.gateway = self.system.start_gateway(*GATEWAY_FLAGS)
        self.port = self.gateway.imaps_port
        self.plain_port = self.gateway.imap_port
        self.description = (
            "mailbox-service (SQLite, WAL, synchronous=FULL) and one imap-gateway with 2 "
            "workers, default limits except the connection caps (off: every client "
            "connects from 127.0.0.1 and the idle phase holds 15,000), plaintext LOGIN "
            "allowed for the plain IMAP runs; argon2id m=%d KiB, "
            "t=%d, p=1."
            % (argon2_memory_kib, argon2_time_cost))
        if bin_dir:
            self.description += " Binaries from %s." % bin_dir

    def configure_for(self, scenario):
        pass  # one configuration for every scenario

    def add_users(self, names):
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda name: self.system.add_user(name, PASSWORD), names))

    def roles(self):
        return {"gateway": [self.gateway.process.pid],
                "service": [self.system.service.pid]}

    def memory_kib(self):
        return procstat.rss_kib(self.gateway.process.pid)

    def service_memory_kib(self):
        return procstat.rss_kib(self.system.service.pid)

    def reset_peak(self):
        procstat.reset_peak_rss(self.gateway.process.pid)

    def peak_kib(self):
        return procstat.peak_rss_kib(self.gateway.process.pid)

    def restart_front_end(self):
        self.gateway.process.send_signal(signal.SIGTERM)
        self.gateway.process.wait(timeout=60)
        self.system.gateways.remove(self.gateway)
        self.gateway = self.system.start_gateway(*GATEWAY_FLAGS)
        self.port = self.gateway.imaps_port
        self.plain_port = self.gateway.imap_port

    def admin_endpoint(self):
        """Where mailbox-admin reaches the service, and its admin token file."""
        return self.system.service_target, os.path.join(self.system.dir, "data", "admin.token")

    def revise(self, user, uid):
        """Revises message `uid` through the Revise API (mailbox-admin revise). The
        tool is started first and blocks reading the new message from stdin; the clock
        starts when the message is handed over, so process start-up is not counted."""
        server, token_file = self.admin_endpoint()
        env = dict(os.environ, MAILBOX_SERVER=server, MAILBOX_ADMIN_TOKEN_FILE=token_file)
        process = subprocess.Popen([self.system.admin_bin, "revise", user, "INBOX", str(uid), "-"],
                                   env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        time.sleep(0.5)
        t0 = time.time()
        out, err = process.communicate(bench_message("revised %d" % uid), timeout=60)
        if process.returncode != 0:
            raise RuntimeError("mailbox-admin revise: %s" % err.decode(errors="replace"))
        return t0, "Revise API (mailbox-admin revise)"

    def stop(self):
        self.system.stop()


class ImapdCluster(Imapd):
    """Our system on PostgreSQL: `replicas` mailbox-service replicas on one private
    PostgreSQL server and `gateways` gateways, each spreading its calls over all the
    replicas (tests/replicas/cluster.py); the load generator spreads its connections
    over the gateways in turn, as a load balancer would. PostgreSQL's processes are a
    role of their own, so its CPU is counted beside the gateways' and the replicas'."""

    def __init__(self, work, argon2_memory_kib, argon2_time_cost, replicas, gateways=1):
        import cluster
        self.name = "imapd-pg%d" % replicas + ("" if gateways == 1 else "-gw%d" % gateways)
        os.environ.setdefault("TEST_TMPDIR", work)
        self.cluster = cluster.Cluster(self.name)
        for _ in range(replicas):
            self.cluster.start_replica(harness.argon2_memory_flag(self.cluster.system.service_bin,
                                                                    argon2_memory_kib),
                                       "--argon2-time-cost=%d" % argon2_time_cost)
        self.system = self.cluster.system
        self.gateways = [self.cluster.start_gateway(*GATEWAY_FLAGS) for _ in range(gateways)]
        self._set_ports()
        self.description = (
            "%d mailbox-service replica%s (--backend=postgres) on one PostgreSQL %s server "
            "(Unix socket, fsync on, default settings otherwise) and %d imap-gateway%s with 2 "
            "workers over all replicas%s; gateway flags and argon2id (m=%d KiB, t=%d) as for "
            "imapd." % (replicas, "" if replicas == 1 else "s",
                        os.path.basename(os.path.dirname(self.cluster.postgres.bin)),
                        gateways, "" if gateways == 1 else "s",
                        "" if gateways == 1 else ", connections spread over the gateways in turn",
                        argon2_memory_kib, argon2_time_cost))

    def _set_ports(self):
        self.gateway = self.gateways[0]  # the bench's own commands use the first
        self.port = self.gateway.imaps_port
        self.plain_port = self.gateway.imap_port
        self.loadgen_ports = ",".join(str(g.imaps_port) for g in self.gateways)
        self.loadgen_plain_ports = ",".join(str(g.imap_port) for g in self.gateways)

    def _gateway_pids(self):
        return [g.process.pid for g in self.gateways]

    def memory_kib(self):
        return sum(procstat.rss_kib(pid) for pid in self._gateway_pids())

    def reset_peak(self):
        for pid in self._gateway_pids():
            procstat.reset_peak_rss(pid)

    def peak_kib(self):
        return sum(procstat.peak_rss_kib(pid) for pid in self._gateway_pids())

    def add_users(self, names):
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda name: self.cluster.admin("user", "add", name, "--password",
                                                          PASSWORD), names))

    def _postgres_pids(self):
        with open(os.path.join(self.cluster.postgres.dir, "data", "postmaster.pid")) as f:
            return procstat.descendants(int(f.readline()))

    def roles(self):
        return {"gateway": self._gateway_pids(),
                "service": [r.process.pid for r in self.cluster.replicas],
                "postgres": self._postgres_pids()}

    def service_memory_kib(self):
        return sum(procstat.rss_kib(r.process.pid) for r in self.cluster.replicas)

    def restart_front_end(self):
        for gateway in self.gateways:
            gateway.process.send_signal(signal.SIGTERM)
            gateway.process.wait(timeout=60)
            self.system.gateways.remove(gateway)
            self.cluster.gateways.remove(gateway)
        self.gateways = [self.cluster.start_gateway(*GATEWAY_FLAGS) for _ in self.gateways]
        self._set_ports()

    def admin_endpoint(self):
        return (self.cluster.replicas[0].target,
                os.path.join(self.cluster.replicas[0].data, "admin.token"))

    def stop(self):
        self.cluster.stop()


class Dovecot:
    """Debian's Dovecot on its own configuration, users and Maildir (bench/suite/dovecot.py)."""

    name = "dovecot"
    # Sessions move to imap-hibernate 5 s after their IDLE starts (dovecot.py).
    idle_settle_s = 10
    memory_what = "PSS of Dovecot's processes but auth"

    def __init__(self, work, argon2_memory_kib, argon2_time_cost, cert, key):
        import dovecot
        # Dovecot's unprivileged processes must reach every directory above their own,
        # and its socket paths must stay short, so it lives in /tmp rather than under
        # the output directory (which may be deep, or under a 0700 home); its log is
        # copied back when it stops.
        self.log_copy = os.path.join(work, "dovecot.log")
        self.tmp = tempfile.mkdtemp(prefix="imapd-bench-dovecot-", dir="/tmp")
        os.chmod(self.tmp, 0o711)
        for source in (cert, key):
            shutil.copy(source, self.tmp)
        self.server = dovecot.Dovecot(
            os.path.join(self.tmp, "d"), os.path.join(self.tmp, os.path.basename(cert)),
            os.path.join(self.tmp, os.path.basename(key)),
            argon2_memory_kib=argon2_memory_kib, argon2_time_cost=argon2_time_cost)
        self.users = []
        self.port = None
        self.plain_port = None
        self.description = ""

    def configure_for(self, scenario):
        """Each side runs as its operators would for the scenario: Dovecot's answer to
        many idle clients is IMAP hibernation (the idle scenario measures memory with
        it on), but a hibernated session is thawed into a new imap process before it is
        told of a change, so the push scenario runs with it off, as Dovecot ships."""
        hibernate = scenario != "push"
        if hibernate != self.server.hibernate:
            self.server.hibernate = hibernate
            self.restart_front_end()

    def add_users(self, names):
        """Dovecot reads its users from the SQLite table dovecot.py writes at start."""
        self.users.extend((name, PASSWORD) for name in names)
        self.restart_front_end()
        self.description = self.server.describe() + (
            " The push scenario alone runs with hibernation off (as Dovecot ships): a "
            "hibernated session is thawed into a new imap process before it is told of a "
            "change, which with thousands of idlers takes seconds.")

    def roles(self):
        return {"dovecot": self.server.pids()}

    def memory_kib(self):
        """PSS of every Dovecot process except auth and its workers: they hold no
        connection, and a burst of logins leaves up to 30 workers of ~20-40 MiB that
        exit a minute later, which would otherwise count as memory per connection."""
        return procstat.pss_kib([pid for pid in self.server.pids()
                                 if procstat.comm(pid) != "auth"])

    def service_memory_kib(self):
        return None  # one figure covers every Dovecot process

    def reset_peak(self):
        pass  # sampled instead: a peak over many processes has no single counter

    def peak_kib(self):
        return 0

    def restart_front_end(self):
        self.server.stop()  # idempotent: nothing to stop before the first start
        self.server.start(self.users)
        self.port = self.server.imaps_port
        self.plain_port = self.server.imap_port

    def revise(self, user, uid):
        """Dovecot has no revision API; the IMAP equivalent is APPEND of the new
        version, then UID EXPUNGE of the old one (RFC 4315 §2.1)."""
        client = imap_client(self.port)
        client.select("INBOX")
        t0 = time.time()
        client.append("INBOX", None, None, bench_message("revised %d" % uid))
        client.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
        client.uid("EXPUNGE", str(uid))
        client.logout()
        return t0, "APPEND + UID EXPUNGE over IMAP (no revision API)"

    def stop(self):
        self.server.stop()
        if os.path.exists(self.server.log_path):
            shutil.copy(self.server.log_path, self.log_copy)
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---- Running the load generator -------------------------------------------------------

def run_loadgen(target, out_dir, args, timeout, transport="tls", cpu=None, started=None):
    """Runs the load generator to completion. transport "tls" connects to the IMAPS
    port, "plain" to the plain IMAP port. If `cpu` is a dict, its "loadgen" entry is set
    to the load generator's own CPU seconds (user + system, from wait4)."""
    os.makedirs(out_dir, exist_ok=True)
    if transport == "tls":
        command = [LOADGEN, "--port=%s" % getattr(target, "loadgen_ports", target.port), "--tls"]
    else:
        command = [LOADGEN,
                   "--port=%s" % getattr(target, "loadgen_plain_ports", target.plain_port)]
    command += ["--out-dir=" + out_dir] + args
    with open(os.path.join(out_dir, "loadgen.log"), "w") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        if started:
            started(process)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise subprocess.TimeoutExpired(command, timeout)
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
    if cpu is not None:
        cpu["loadgen"] = round(usage.ru_utime + usage.ru_stime, 3)
    if process.returncode != 0:
        with open(os.path.join(out_dir, "loadgen.log")) as f:
            raise RuntimeError("imap-loadgen %s failed: %s" % (" ".join(args), f.read()[-2000:]))
    return load_outputs(out_dir)


def load_outputs(out_dir):
    with open(os.path.join(out_dir, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(out_dir, "samples.jsonl")) as f:
        samples = [json.loads(line) for line in f if line.strip()]
    return summary, samples


def cpu_snapshot(target):
    return {role: procstat.cpu_seconds(pids) for role, pids in target.roles().items()}


def cpu_delta(before, after):
    """CPU seconds each server role spent; "total" is the server's (every role but the
    load generator, which is added beside it by measured_run)."""
    delta = {role: round(after[role] - before[role], 3) for role in before}
    delta["total"] = round(sum(delta.values()), 3)
    return delta


def per_thousand(cpu, count):
    return {role: round(seconds * 1000.0 / count, 4) if count else None
            for role, seconds in cpu.items()}


def memory_roles(target):
    if isinstance(target, ImapdCluster):
        return {"gateway": target.memory_kib, "service": target.service_memory_kib}
    if isinstance(target, Imapd):
        return {"gateway": lambda: procstat.rss_kib(target.gateway.process.pid),
                "service": lambda: procstat.rss_kib(target.system.service.pid)}
    return {"total": target.memory_kib}


def measured_run(target, out_dir, args, timeout, sample_interval=1.0, transport="tls"):
    """A loadgen run with CPU and memory of the server taken around it, and the load
    generator's own CPU (it shares the machine's cores with the server)."""
    base = {role: fn() for role, fn in memory_roles(target).items()}
    before = cpu_snapshot(target)
    loadgen_cpu = {}
    with procstat.Sampler(memory_roles(target), sample_interval) as sampler:
        summary, samples = run_loadgen(target, out_dir, args, timeout, transport=transport,
                                       cpu=loadgen_cpu)
    cpu = cpu_delta(before, cpu_snapshot(target))
    cpu.update(loadgen_cpu)
    peak = dict(sampler.peak)
    if "total" not in peak:
        peak["total"] = sum(peak.values())
    return summary, samples, cpu, peak, base


# ---- Scenarios ------------------------------------------------------------------------

def scenario_profiles(target, opts, out):
    rows = []
    for profile, clients, transport in profile_runs(opts):
        name = "%s-%d%s" % (profile, clients, "" if transport == "tls" else "-plain")
        log("%s: profile %s, %d clients over %s, %d s"
            % (target.name, profile, clients, transport, opts.duration))
        users = min(clients, opts.users)
        # Populate first, outside the measured run (a run of 1 ms starts no session).
        run_loadgen(target, os.path.join(out, name + "-populate"),
                    ["--profile=" + profile_path(profile), "--users=%d" % users,
                     "--clients=%d" % min(users, 32), "--duration=1ms",
                     "--populate=%d" % opts.populate], timeout=1800)
        summary, samples, cpu, peak, base = measured_run(
            target, os.path.join(out, name),
            ["--profile=" + profile_path(profile), "--users=%d" % users,
             "--clients=%d" % clients, "--duration=%ds" % opts.duration,
             "--seed=%d" % clients], timeout=opts.duration + 600, transport=transport)
        front = "gateway" if "gateway" in peak else "total"
        rows.append({
            "profile": profile, "clients": clients, "transport": transport,
            "duration_s": opts.duration,
            "summary": summary, "samples": samples, "cpu_s": cpu,
            "cpu_s_per_1000_commands": per_thousand(cpu, summary["commands"]),
            "rss_kib_peak": peak,
            "rss_kib_per_connection": round(max(0, peak[front] - base.get(front, 0)) / clients, 2),
        })
    return rows


def profile_runs(opts):
    """(profile, clients, transport) of every profile run: each profile at each client
    count over IMAPS; the profiles named by --plain-profiles also over plain IMAP."""
    for profile in opts.profiles:
        for clients in opts.clients:
            for transport in TRANSPORTS:
                if transport == "tls" or profile in opts.plain_profiles:
                    yield profile, clients, transport


def perf_problem():
    """Why `perf record` cannot sample the machine here, or None."""
    if not shutil.which("perf"):
        return "perf is not installed (Debian's linux-perf)"
    probe = subprocess.run(["perf", "record", "-a", "-g", "-o", "/dev/null", "--", "true"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else "perf record failed: " + probe.stderr[-300:]


def scenario_flame(target, opts, out):
    """The persistent-session profile at 10 clients over IMAPS under `perf record -a -g`,
    folded into one CPU flame graph per process role (the load generator included)."""
    problem = perf_problem()
    if problem:
        return {"skipped": problem}
    out_dir = os.path.join(out, "flame")
    profile = profile_path(FLAME_PROFILE)
    users = min(FLAME_CLIENTS, opts.users)
    log("%s: flame graphs, profile %s, %d clients, %d s"
        % (target.name, FLAME_PROFILE, FLAME_CLIENTS, opts.flame_duration))
    run_loadgen(target, os.path.join(out_dir, "populate"),
                ["--profile=" + profile, "--users=%d" % users, "--clients=%d" % users,
                 "--duration=1ms", "--populate=%d" % opts.populate], timeout=1800)
    roles = {role: set(pids) for role, pids in target.roles().items()}
    perf_data = os.path.join(out_dir, "perf.data")
    perf = subprocess.Popen(["perf", "record", "-a", "-g", "-F", "499", "-o", perf_data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Dovecot starts a process per session: its roles are read again while the run goes.
    done = threading.Event()

    def watch_roles():
        while not done.wait(0.5):
            for role, pids in target.roles().items():
                roles.setdefault(role, set()).update(pids)

    watcher = threading.Thread(target=watch_roles, daemon=True)
    watcher.start()
    try:
        summary, _ = run_loadgen(
            target, out_dir,
            ["--profile=" + profile, "--users=%d" % users, "--clients=%d" % FLAME_CLIENTS,
             "--duration=%ds" % opts.flame_duration, "--seed=%d" % FLAME_CLIENTS],
            timeout=opts.flame_duration + 600,
            started=lambda process: roles.setdefault("loadgen", set()).add(process.pid))
    finally:
        done.set()
        watcher.join()
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=300)
    stacks = flamegraph.fold(perf_data, roles)
    os.remove(perf_data)  # hundreds of MB; the folded stacks are kept
    files, samples, top = {}, {}, {}
    for role, folded in sorted(stacks.items()):
        path = os.path.join(out_dir, "flame-%s.svg" % role)
        with open(path, "w") as f:
            f.write(flamegraph.render_svg(
                folded, "%s: %s, %d clients, IMAPS" % (role, FLAME_PROFILE, FLAME_CLIENTS)))
        with open(os.path.join(out_dir, "folded-%s.txt" % role), "w") as f:
            f.writelines("%s %d\n" % item for item in sorted(folded.items()))
        files[role] = os.path.relpath(path, os.path.dirname(out))
        samples[role] = sum(folded.values())
        top[role] = flamegraph.top_frames(folded)
    return {"profile": FLAME_PROFILE, "clients": FLAME_CLIENTS, "transport": "tls",
            "duration_s": opts.flame_duration, "commands": summary["commands"],
            "samples": samples, "svg": files, "top_frames": top}


def wait_for_ready(out_dir, process, timeout):
    path = os.path.join(out_dir, "ready.json")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        if process.poll() is not None:
            raise RuntimeError("imap-loadgen exited before its clients were idling; see %s"
                               % os.path.join(out_dir, "loadgen.log"))
        time.sleep(0.1)
    raise RuntimeError("clients not idling after %d s" % timeout)


def start_idlers(target, out_dir, clients, users, hold_s, cpus=None):
    """cpus: a CPU list for taskset (e.g. "1") to pin the load generator to.

    At most 8 clients per user set up at once: our service allows 16 calls in flight
    per user (--max-calls-per-user), and more clients of one user logging in and
    selecting together (the push scenario has one user) would be refused with
    NO [LIMIT], as that limit intends, and count as clients that never idled. The
    setup is not measured."""
    setup_concurrency = min(64, 8 * users)
    os.makedirs(out_dir, exist_ok=True)
    err = open(os.path.join(out_dir, "loadgen.log"), "w")
    pin = ["taskset", "-c", cpus] if cpus else []
    process = subprocess.Popen(
        pin + [LOADGEN, "--port=%d" % target.port, "--tls", "--out-dir=" + out_dir,
               "--scenario=idle", "--clients=%d" % clients, "--users=%d" % users,
               "--setup-concurrency=%d" % setup_concurrency,
               "--duration=%ds" % hold_s, "--timeout=120s"],
        stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    return process


def scenario_idle(target, opts, out):
    rows = []
    for count in opts.idle_counts:
        log("%s: %d idle TLS connections in IDLE" % (target.name, count))
        target.restart_front_end()
        time.sleep(1)
        before = target.memory_kib()
        service_before = target.service_memory_kib()
        out_dir = os.path.join(out, "idle-%d" % count)
        process = start_idlers(target, out_dir, count, min(count, opts.users),
                               hold_s=target.idle_settle_s + 5)
        try:
            ready = wait_for_ready(out_dir, process, timeout=3600)
            time.sleep(target.idle_settle_s)
            after = target.memory_kib()
            service_after = target.service_memory_kib()
        finally:
            process.wait(timeout=600)
        established = ready["idling"]
        rows.append({
            "connections": count, "established": established, "failed": ready["failed"],
            "setup_s": ready["setup_s"], "memory_kib_before": before,
            "memory_kib_after": after, "what": target.memory_what,
            "kib_per_connection": round((after - before) / established, 2) if established else None,
        })
        if service_before is not None and established:
            # Allocator noise can shrink the service a little; that is no growth.
            rows[-1]["service_kib_per_connection"] = round(
                max(0, service_after - service_before) / established, 2)
    return rows


def latency_stats(t0, t_next, arrivals_us):
    """For each client, its first notification at or after t0 (and before the next
    event); returns the summary the report shows."""
    delays = []
    for times in arrivals_us:
        seen = [t / 1e6 - t0 for t in times if t0 * 1e6 <= t < t_next * 1e6]
        if seen:
            delays.append(min(seen) * 1000.0)
    delays.sort()
    n = len(delays)

    def pct(p):
        return round(delays[min(n - 1, max(0, int(-(-p * n // 100)) - 1))], 3) if n else None

    cdf = []
    if n:
        for p in (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 100):
            cdf.append([pct(p), p / 100.0])
    return {"seen": n, "missed": len(arrivals_us) - n, "p50_ms": pct(50), "p99_ms": pct(99),
            "max_ms": round(delays[-1], 3) if n else None, "cdf": cdf}


def set_affinity(pids, cpus):
    """Pins every thread of `pids` (and so the processes and threads they start
    later) to the CPU set `cpus`. Threads that exit meanwhile are skipped."""
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                pass


def push_round(target, opts, out_dir, pinned):
    """One IDLE push measurement: every client idles, then an APPEND from another
    connection and a revision of that message. Pinned: the load generator (and this
    script, which sends the APPEND and starts the revision) on CPU 1, the servers'
    processes on CPU 0, so the figures are the servers' and not the client's."""
    clients = opts.push_clients
    gap = opts.push_gap  # between the events, so each client's first arrival is unambiguous
    all_cpus = os.sched_getaffinity(0)
    server_pids = [pid for pids in target.roles().values() for pid in pids]
    if pinned:
        set_affinity(server_pids, {0})
        os.sched_setaffinity(0, {1})
    try:
        process = start_idlers(target, out_dir, clients, users=1,
                               hold_s=int(opts.push_settle + 3 * gap + 4),
                               cpus="1" if pinned else None)
        try:
            wait_for_ready(out_dir, process, timeout=3600)
            # Every client has its IDLE continuation; a few seconds more let a server
            # that starts a process per session finish setting each one up (Dovecot's
            # first notification after a mass login was seconds late with 1 s here).
            time.sleep(opts.push_settle)
            client = imap_client(target.port)
            message = bench_message("push append %s" % ("pinned" if pinned else "unpinned"))
            # The clock starts just before the APPEND command's first byte is sent and
            # stops at each idling client's receipt of the EXISTS (loadgen's clock).
            t_append = time.time()
            uid = append_uid(client.append("INBOX", None, None, message)[1])
            client.logout()
            time.sleep(gap)
            t_revise, how = target.revise("user1", uid)
            time.sleep(gap)
        finally:
            process.wait(timeout=600)
    finally:
        if pinned:
            os.sched_setaffinity(0, all_cpus)
            set_affinity([pid for pids in target.roles().values() for pid in pids], all_cpus)
    with open(os.path.join(out_dir, "arrivals.json")) as f:
        recorded = json.load(f)
    arrivals = recorded["arrivals_unix_us"]
    append = latency_stats(t_append, t_revise, arrivals)
    revise = latency_stats(t_revise, float("inf"), arrivals)
    # Clients that never got to IDLE (their reasons are in loadgen.log) count as
    # missed above; this tells them apart from idlers that were not notified.
    for event in (append, revise):
        event["not_idling"] = recorded.get("failed", 0)
    append.update(kind="append", how="IMAP APPEND from another connection")
    revise.update(kind="revise", how=how)
    return [append, revise]


def scenario_push(target, opts, out):
    clients = opts.push_clients
    result = {"clients": clients}
    pinnable = len(os.sched_getaffinity(0)) >= 2 and shutil.which("taskset")
    for mode in ("pinned", "unpinned"):
        if mode == "pinned" and not pinnable:
            log("%s: IDLE push, pinned: needs two CPUs and taskset; skipped" % target.name)
            continue
        log("%s: IDLE push to %d clients, %s" % (target.name, clients, mode))
        try:
            result[mode] = {"events": push_round(
                target, opts, os.path.join(out, "push-" + mode), pinned=(mode == "pinned"))}
        except (RuntimeError, subprocess.TimeoutExpired, OSError, imaplib.IMAP4.error) as e:
            if mode != "pinned":
                raise
            # A server of many processes squeezed onto one core (Dovecot: one per
            # session) may not answer the bench's own client in time; the unpinned
            # round still runs, and the pinned one says why it has no figures.
            log("%s: IDLE push, pinned: %s" % (target.name, e))
            result[mode] = {"error": str(e)}
    # The headline figure is the pinned one: the servers' latency, not the client's.
    measured = "pinned" if "events" in result.get("pinned", {}) else "unpinned"
    result["events"] = result[measured]["events"]
    result["events_from"] = measured
    return result


def scenario_transfer(target, opts, out):
    log("%s: 50 MB APPEND and FETCH" % target.name)
    # A fresh front end: the idle scenario's 15,000 connections leave the gateway's
    # heap large (freed memory that glibc keeps), which would hide the peak.
    target.restart_front_end()
    target.reset_peak()
    summary, _, _, peak, base = measured_run(
        target, os.path.join(out, "transfer"),
        ["--profile=" + profile_path("transfer-50m"), "--users=1", "--clients=1",
         "--duration=%ds" % opts.transfer_duration, "--timeout=300s"],
        timeout=opts.transfer_duration + 900, sample_interval=0.05)
    size = 50 << 20
    kinds = summary["kinds"]
    front = "gateway" if "gateway" in peak else "total"

    # Each command's latency is the client's wall time from the first byte of the
    # command (for APPEND: the command line, the wait for its continuation and the
    # whole literal) to its tagged OK; the load generator's own work of building
    # the message is not in it. MB/s = 10^6 octets per second of that time.
    def mb_s(kind, field="mean_us"):
        row = kinds.get(kind)
        return round(size / (row[field] / 1e6) / 1e6, 1) if row and row.get(field) else None

    return {"size_bytes": size, "append_mb_s": mb_s("append"), "fetch_mb_s": mb_s("fetch2"),
            "append_mb_s_p50": mb_s("append", "p50_us"),
            "fetch_mb_s_p50": mb_s("fetch2", "p50_us"),
            "how": "client wall time from the command's first byte to its tagged OK",
            "appends": kinds.get("append", {}).get("count", 0),
            "fetches": kinds.get("fetch2", {}).get("count", 0),
            "memory_kib_base": base[front],
            "memory_kib_peak": max(peak[front], target.peak_kib()),
            # Our mailbox service's RSS at its peak (50 ms samples) over its RSS
            # before the run: what holding a large message costs the store.
            "service_memory_kib_growth": (max(0, peak["service"] - base["service"])
                                          if "service" in peak and "service" in base
                                          else None),
            "what": target.memory_what, "errors": summary["errors"]}


def scenario_login(target, opts, out):
    clients = opts.login_clients
    log("%s: login storm, %d clients" % (target.name, clients))
    summary, samples, cpu, _, _ = measured_run(
        target, os.path.join(out, "login"),
        ["--profile=" + profile_path("login-storm"), "--users=%d" % min(clients, opts.users),
         "--clients=%d" % clients, "--duration=%ds" % opts.login_duration],
        timeout=opts.login_duration + 600)
    kinds = summary["kinds"]
    logins = kinds.get("login", {})
    connect = kinds.get("connect", {})
    return {"clients": clients, "duration_s": opts.login_duration,
            "logins_per_s": logins.get("per_s"), "handshakes_per_s": connect.get("per_s"),
            "login_p50_ms": logins.get("p50_us", 0) / 1000.0,
            "login_p99_ms": logins.get("p99_us", 0) / 1000.0,
            "connect_p50_ms": connect.get("p50_us", 0) / 1000.0,
            "cpu_s": cpu, "cpu_s_per_1000_logins": per_thousand(cpu, logins.get("count", 0)),
            "errors": summary["errors"], "samples": samples}


RUNNERS = {"profiles": scenario_profiles, "flame": scenario_flame, "idle": scenario_idle,
           "push": scenario_push,
           "transfer": scenario_transfer, "login": scenario_login}
# results.json section of each scenario (the schema report.py reads).
SECTIONS = {"profiles": "profiles", "flame": "flame", "idle": "idle", "push": "push",
            "transfer": "transfer",
            "login": "login_storm"}


# ---- The suite ------------------------------------------------------------------------

def host_info():
    info = {"cores": os.cpu_count(), "kernel": os.uname().release, "cpu_model": ""}
    with open("/proc/meminfo") as f:
        info["mem_total_kib"] = int(f.readline().split()[1])
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    return info


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="output directory (default bench-results/DATE)")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds of each scenario at tiny sizes; checks the bench runs")
    parser.add_argument("--no-dovecot", action="store_true", help="our system only")
    parser.add_argument("--baseline-bin", metavar="DIR",
                        help="also run our system from the binaries under DIR (same layout "
                             "as bazel-bin, e.g. an earlier commit's), named imapd-baseline")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help="comma-separated scenarios: " + ", ".join(SCENARIOS))
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--clients", default="10,100,1000", help="clients per profile run")
    parser.add_argument("--plain-profiles", default="imaptest-persistent",
                        help="profiles also run over plain IMAP (all run over IMAPS)")
    parser.add_argument("--duration", type=int, default=20, help="seconds per profile run")
    parser.add_argument("--flame-duration", type=int, default=15,
                        help="seconds of the persistent-session run sampled by perf")
    parser.add_argument("--populate", type=int, default=60, help="messages per user before runs")
    parser.add_argument("--idle-counts", default="1000,5000,15000")
    parser.add_argument("--push-clients", type=int, default=5000)
    parser.add_argument("--push-gap", type=float, default=8.0,
                        help="seconds between the push events")
    parser.add_argument("--push-settle", type=float, default=5.0,
                        help="seconds between all clients idling and the first push event")
    parser.add_argument("--transfer-duration", type=int, default=15)
    parser.add_argument("--login-clients", type=int, default=50)
    parser.add_argument("--login-duration", type=int, default=15)
    parser.add_argument("--topologies", default="sqlite",
                        help="our system's topologies, side by side: sqlite (one service on "
                             "SQLite, one gateway), postgres:R (R replicas on PostgreSQL, one "
                             "gateway over them) and postgres:R:G (R replicas, G gateways, the "
                             "load generator's connections spread over the gateways in turn), "
                             "e.g. sqlite,postgres:1,postgres:2,postgres:2:2")
    parser.add_argument("--argon2-memory-kib", type=int, default=19456,
                        help="password hash memory, both systems (our service's default)")
    parser.add_argument("--argon2-time-cost", type=int, default=2)
    opts = parser.parse_args(argv)
    if opts.smoke:
        opts.clients, opts.duration, opts.populate = "3", 2, 10
        opts.flame_duration = 2
        opts.idle_counts, opts.push_clients, opts.push_gap = "20", 20, 2.0
        opts.push_settle = 1.0
        opts.transfer_duration, opts.login_clients, opts.login_duration = 2, 2, 2
        opts.argon2_memory_kib, opts.argon2_time_cost = 64, 1
    opts.topologies = [t for t in opts.topologies.split(",") if t]
    for topology in opts.topologies:
        if topology != "sqlite" and not re.fullmatch(r"postgres:[1-9](:[1-9])?", topology):
            parser.error("unknown topology %r (sqlite, or postgres:R or postgres:R:G with R "
                         "replicas and G gateways, each from 1 to 9)" % topology)
    opts.only = [s for s in opts.only.split(",") if s]
    opts.profiles = [p for p in opts.profiles.split(",") if p]
    opts.plain_profiles = [p for p in opts.plain_profiles.split(",") if p]
    opts.clients = [int(c) for c in opts.clients.split(",")]
    opts.idle_counts = [int(c) for c in opts.idle_counts.split(",")]
    for name in opts.only:
        if name not in RUNNERS:
            parser.error("unknown scenario %r (choose from %s)" % (name, ", ".join(SCENARIOS)))
    for name in opts.profiles:
        if not os.path.exists(profile_path(name)):
            parser.error("no profile %r in bench/loadgen/profiles" % name)
    opts.users = max(opts.clients + [opts.login_clients, 1])
    if not opts.out:
        opts.out = os.path.join(ROOT, "bench-results",
                                datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    return opts


def start_targets(opts, work):
    targets = []
    for topology in opts.topologies:
        if topology == "sqlite":
            targets.append(Imapd(work, opts.argon2_memory_kib, opts.argon2_time_cost))
        else:
            counts = [int(n) for n in topology.split(":")[1:]]
            targets.append(ImapdCluster(work, opts.argon2_memory_kib, opts.argon2_time_cost,
                                        *counts))
    if opts.baseline_bin:
        targets.append(Imapd(work, opts.argon2_memory_kib, opts.argon2_time_cost,
                             name=BASELINE, bin_dir=opts.baseline_bin))
    if not opts.no_dovecot:
        import dovecot
        problem = dovecot.check_installed()
        if problem:
            raise SystemExit("bench: %s (or run with --no-dovecot)" % problem)
        ours = targets[0].system
        targets.append(Dovecot(work, opts.argon2_memory_kib, opts.argon2_time_cost,
                               ours.cert, ours.key))
    names = ["user%d" % i for i in range(1, opts.users + 1)]
    for target in targets:
        log("%s: creating %d users" % (target.name, len(names)))
        target.add_users(names)
    return targets


def main(argv=None):
    opts = parse_args(argv)
    out = os.path.abspath(opts.out)
    work = os.path.join(out, "work")
    os.makedirs(work, exist_ok=True)
    results = {"meta": {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(), "smoke": opts.smoke, "host": host_info(),
        "password_hash": "argon2id, m=%d KiB, t=%d, p=1 (both systems)"
                         % (opts.argon2_memory_kib, opts.argon2_time_cost),
        "scenarios": [SECTIONS[s] for s in opts.only], "systems": [], "notes": {}},
        "systems": {}}
    targets = []
    try:
        targets = start_targets(opts, work)
        for target in targets:
            results["meta"]["systems"].append(target.name)
            results["meta"]["notes"][target.name] = target.description
            results["systems"][target.name] = {}
        # Scenario by scenario, both systems back to back, so that they run under the
        # same conditions of the machine.
        for scenario in opts.only:
            for target in targets:
                section = results["systems"][target.name]
                try:
                    target.configure_for(scenario)
                    section[SECTIONS[scenario]] = RUNNERS[scenario](
                        target, opts, os.path.join(out, target.name))
                except (RuntimeError, subprocess.TimeoutExpired, OSError, imaplib.IMAP4.error) as e:
                    log("%s: %s failed: %s" % (target.name, scenario, e))
                    section[SECTIONS[scenario]] = {"error": str(e)}
    finally:
        for target in targets:
            target.stop()
    results["meta"]["finished"] = datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(out, "report.html"), "w") as f:
        f.write(report.render_html(results, base_dir=out))
    print("bench: results in %s/results.json, report in %s/report.html" % (out, out))
    failed = [(name, scenario) for name, section in results["systems"].items()
              for scenario, value in section.items()
              if isinstance(value, dict) and "error" in value]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
