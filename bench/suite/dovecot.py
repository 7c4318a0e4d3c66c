#!/usr/bin/env python3
"""Runs Debian 12's Dovecot (2.3.19) beside our server for the side-by-side bench.

The bench starts and stops its own Dovecot instance: its own configuration,
users, Maildir, base_dir, state_dir and log, all under a work directory, on
free loopback ports. It never reads or changes /etc/dovecot and never touches
the system's dovecot service (if one runs on 143/993, it is left alone).
Needs root (Dovecot's master drops privileges per service) and the Debian
packages in PACKAGES.

API (Python 3.11 stdlib only):

  check_installed() -> str | None
      None when Dovecot can be run; otherwise an error text naming the
      packages to install.

  d = Dovecot(workdir, cert_file, key_file, argon2_memory_kib=19456,
              argon2_time_cost=2, hibernate=True)
  d.start(users)      users: list of (name, password). Writes the config, an
                      SQLite user table of {ARGON2ID} hashes (one argon2 run
                      per distinct password) and the Maildir root, runs
                      `dovecot -F -c CONFIG` as a child process and returns
                      once both ports accept and a LOGIN succeeds. Raises
                      RuntimeError (with the log's tail) otherwise.
  d.imaps_port, d.imap_port   ports chosen by start() (implicit TLS, plain).
  d.log_path, d.mail_root     where Dovecot logs and keeps mail.
  d.pids()            the master and all its descendants (for memory).
  d.cpu_seconds()     CPU time of the master and every process it has run,
                      including the many imap processes that already exited
                      (the master reaps them, so their time is in its
                      cutime/cstime); summing pids() misses those.
  d.version()         e.g. "2.3.19.1 (9b53102964), Debian 1:2.3.19.1+dfsg1-2.1+deb12u7".
  d.describe()        one paragraph for the report: version and config choices.
  d.stop()            SIGTERM, wait, SIGKILL what is left; idempotent.

hibernate=False keeps every IDLE session in its own imap process instead of
moving it to imap-hibernate: about 0.5 MiB per connection instead of about
10 KiB, but a change reaches 5,000 idlers of one mailbox in about 1.5 s
instead of up to 15 s (each hibernated idler is thawed into a new process).

Side effects outside the work directory, both undone by stop():
  * /proc/sys/fs/inotify/max_user_instances is raised to 32,768 for the run
    (every imap session holds an inotify instance, counted per user; at the
    default of 128 Dovecot stops hibernating and polls every 30 s);
  * the bench's own soft RLIMIT_NOFILE is raised to its hard limit, which
    Dovecot inherits.
The work directory and every directory above it must be searchable by other
users (o+x): mail processes run as `nobody`, the auth processes as `dovecot`.
start() makes the work directory itself 0711 and refuses a closed ancestor.

Log lines written while stop() runs (e.g. "write(anvil) failed" from
sessions killed together) are expected; judge the log before stop().

Self-check, run by hand as root:  python3 bench/suite/dovecot.py --self-test
"""

import argparse
import asyncio
import contextlib
import grp
import imaplib
import os
import pwd
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import ssl
import stat
import statistics
import subprocess
import sys
import tempfile
import time

DOVECOT = "/usr/sbin/dovecot"
DH_PARAMS = "/usr/share/dovecot/dh.pem"
PACKAGES = "dovecot-imapd dovecot-sqlite argon2"

# Mail processes run as this existing unprivileged user; it is distinct from
# Dovecot's own internal users (dovecot, dovenull), as Dovecot recommends.
MAIL_USER, MAIL_GROUP = "nobody", "nogroup"

# Sizing for the bench's heaviest phases: 1,000 busy clients, 15,000 idle
# connections, and 5,000 IDLE connections of one user woken by one APPEND.
# Each Dovecot process must stay under 20,000 open files (the limit here).
MAX_CONNECTIONS = 16_000  # imap processes and per-user+IP connections
LOGIN_CLIENT_LIMIT = 5_000  # per imap-login process; TLS keeps 2 fds per client
LOGIN_PROCESS_LIMIT = 8
HIBERNATE_CLIENT_LIMIT = 5_000  # per imap-hibernate process; 2 fds per client
HIBERNATE_TIMEOUT_S = 5  # the value Dovecot's hibernation page uses
# stats and auth run as one process each; every imap process keeps a stats
# connection, and each login's imap process briefly connects to auth.
SINGLE_PROCESS_CLIENT_LIMIT = 18_000

INOTIFY_INSTANCES = "/proc/sys/fs/inotify/max_user_instances"
INOTIFY_INSTANCES_WANTED = 32_768


def check_installed() -> str | None:
    """Returns None if Dovecot (with ARGON2ID and SQLite) and argon2 are usable."""
    needed = (DOVECOT, "/usr/lib/dovecot/imap", "/usr/lib/dovecot/imap-login",
              "/usr/lib/dovecot/imap-hibernate",
              "/usr/lib/dovecot/modules/auth/libdriver_sqlite.so")
    missing = [path for path in needed if not os.path.exists(path)]
    if shutil.which("argon2") is None:
        missing.append("argon2")
    if missing:
        return ("missing %s; install with: apt-get install -y %s"
                % (", ".join(missing), PACKAGES))
    schemes = subprocess.run(["doveadm", "pw", "-l"], capture_output=True, text=True).stdout
    if "ARGON2ID" not in schemes.split():
        return "this Dovecot build lacks the ARGON2ID password scheme (needs libsodium)"
    for user in (MAIL_USER, "dovecot", "dovenull"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return "system user %r is missing; reinstall %s" % (user, PACKAGES)
    if os.geteuid() != 0:
        return "Dovecot's master must start as root (it drops privileges per service)"
    return None


def argon2id_phc(password: str, memory_kib: int, time_cost: int) -> str:
    """Returns the PHC string `$argon2id$v=19$m=..,t=..,p=1$salt$hash`.

    Dovecot's {ARGON2ID} verifies with libsodium, which takes the cost
    parameters from this string, so these are the costs every LOGIN pays.
    """
    salt = secrets.token_hex(8)  # 16 ASCII characters, used as 16 salt bytes
    result = subprocess.run(
        ["argon2", salt, "-id", "-t", str(time_cost), "-k", str(memory_kib), "-p", "1", "-e"],
        input=password.encode(), capture_output=True, check=True)
    return result.stdout.decode().strip()


def free_port() -> int:
    """A loopback port nothing listens on right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from field 3 (state) on, so field N is [N - 3]."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _alive(pid: int) -> bool:
    """True while pid runs; a zombie (state Z) has already exited."""
    fields = _proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _client_tls() -> ssl.SSLContext:
    """The bench's certificate is self-signed; the client does not verify it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Dovecot:
    def __init__(self, workdir: str, cert_file: str, key_file: str,
                 argon2_memory_kib: int = 19456, argon2_time_cost: int = 2,
                 hibernate: bool = True):
        self.workdir = os.path.abspath(workdir)
        self.cert_file = os.path.abspath(cert_file)
        self.key_file = os.path.abspath(key_file)
        self.argon2_memory_kib = argon2_memory_kib
        self.argon2_time_cost = argon2_time_cost
        self.hibernate = hibernate
        self.config_path = os.path.join(self.workdir, "dovecot.conf")
        self.users_db = os.path.join(self.workdir, "users.sqlite")
        self.sql_conf = os.path.join(self.workdir, "dovecot-sql.conf.ext")
        self.log_path = os.path.join(self.workdir, "dovecot.log")
        self.base_dir = os.path.join(self.workdir, "run")  # sockets, master.pid
        self.state_dir = os.path.join(self.workdir, "state")
        self.mail_root = os.path.join(self.workdir, "mail")
        self.imaps_port = 0
        self.imap_port = 0
        self._proc: subprocess.Popen | None = None
        self._hashes: dict[str, str] = {}  # password -> PHC string
        self._version: str | None = None
        self._inotify_limit = 0  # in force during the run
        self._inotify_restore: int | None = None  # value stop() puts back

    # --- lifecycle -------------------------------------------------------

    def start(self, users: list[tuple[str, str]]) -> None:
        if self._proc is not None:
            raise RuntimeError("dovecot already started")
        if not users:
            raise ValueError("start() needs at least one user")
        problem = check_installed()
        if problem:
            raise RuntimeError(problem)
        self._prepare_dirs()
        self._write_users(users)
        self.imaps_port, self.imap_port = free_port(), free_port()
        with open(self.config_path, "w") as f:
            f.write(self._config())
        self._raise_inotify_limit()
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # Dovecot inherits it
        with open(self.log_path, "ab") as log:
            # Own session: a Ctrl-C aimed at the bench does not reach Dovecot,
            # and stop() can find stragglers by process group.
            self._proc = subprocess.Popen([DOVECOT, "-F", "-c", self.config_path],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          start_new_session=True)
        try:
            self._wait_ready(users[0])
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            group = proc.pid  # start_new_session made the master a group leader
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the master ends all its services
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            deadline = time.monotonic() + 10
            while self._group_members(group):
                if time.monotonic() > deadline:
                    os.killpg(group, signal.SIGKILL)
                    deadline = time.monotonic() + 10
                time.sleep(0.1)
        if self._inotify_restore is not None:
            with open(INOTIFY_INSTANCES, "w") as f:
                f.write("%d\n" % self._inotify_restore)
            self._inotify_restore = None

    def pids(self) -> list[int]:
        if self._proc is None or self._proc.poll() is not None:
            return []
        children: dict[int, list[int]] = {}
        for pid in _all_pids():
            fields = _proc_stat(pid)
            if fields:
                children.setdefault(int(fields[1]), []).append(pid)
        found, todo = [], [self._proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def cpu_seconds(self) -> float:
        ticks = 0
        for pid in self.pids():
            fields = _proc_stat(pid)
            if fields:
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
                if pid == self._proc.pid:
                    ticks += int(fields[13]) + int(fields[14])  # of reaped children
        return ticks / os.sysconf("SC_CLK_TCK")

    # --- description -----------------------------------------------------

    def version(self) -> str:
        if self._version is None:
            upstream = subprocess.run([DOVECOT, "--version"], capture_output=True,
                                      text=True).stdout.strip()
            debian = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "dovecot-imapd"],
                                    capture_output=True, text=True).stdout.strip()
            self._version = "%s, Debian %s" % (upstream, debian or "(version unknown)")
        return self._version

    def describe(self) -> str:
        parts = [
            "Dovecot %s (Debian 12 dovecot-imapd) with its own configuration, listening on "
            "127.0.0.1 only: implicit TLS (TLS 1.2 minimum, the bench's self-signed "
            "certificate) on one port, plain IMAP with LOGIN allowed "
            "(disable_plaintext_auth=no) on another." % self.version(),
            "Passwords: {ARGON2ID} PHC strings, argon2id m=%d KiB, t=%d, p=1, in an SQLite "
            "passdb; SQLite is a blocking driver, so each lookup and its libsodium "
            "verification run in auth-worker processes (up to 30, Dovecot's default) on all "
            "cores, and there is no auth cache, so every LOGIN pays the hash "
            "(a passwd-file passdb would verify inside the single auth process, one core)."
            % (self.argon2_memory_kib, self.argon2_time_cost),
            "Mail: static userdb, Maildir under the work directory, mail processes as %s; "
            "mail_fsync at its default (optimized), no safety setting changed." % MAIL_USER,
            "Processes: imap-login in high-performance mode (service_count=0, "
            "process_min_avail=%d = cores, client_limit=%d, process_limit=%d; it also keeps "
            "each TLS connection for the session's life); one imap process per session "
            "(service_count=1, Dovecot's default; process_limit=%d); "
            "mail_max_userip_connections=%d; stats and auth client_limit=%d; open files %d "
            "per process."
            % (_cores(), LOGIN_CLIENT_LIMIT, LOGIN_PROCESS_LIMIT, MAX_CONNECTIONS,
               MAX_CONNECTIONS, SINGLE_PROCESS_CLIENT_LIMIT,
               resource.getrlimit(resource.RLIMIT_NOFILE)[1]),
        ]
        if self.hibernate:
            parts.append(
                "IDLE: IMAP hibernation (imap_hibernate_timeout=%ds, Dovecot's answer for "
                "many idle clients): %d s after IDLE starts the session leaves its imap "
                "process for a shared imap-hibernate process (client_limit=%d) and is thawed "
                "into a new imap process when its mailbox changes or the client sends "
                "anything." % (HIBERNATE_TIMEOUT_S, HIBERNATE_TIMEOUT_S, HIBERNATE_CLIENT_LIMIT))
        else:
            parts.append("IDLE: hibernation off; each IDLE session keeps its imap process.")
        parts.append(
            "A session still in its imap process reports changes after Dovecot's fixed "
            "0.5 s notification delay; the inotify limit per user was %d during the run%s."
            % (self._inotify_limit,
               "" if self._inotify_limit >= MAX_CONNECTIONS else
               " (too low: sessions past it poll every 30 s and cannot hibernate)"))
        return " ".join(parts)

    # --- internals -------------------------------------------------------

    def _prepare_dirs(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o711)
        parent = os.path.dirname(self.workdir)
        while True:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                raise RuntimeError("%s is not searchable by other users (chmod o+x); Dovecot's "
                                   "unprivileged processes must reach %s" % (parent, self.workdir))
            if parent == "/":
                break
            parent = os.path.dirname(parent)
        # Unix socket paths are limited to 108 bytes; leave room for
        # Dovecot's socket names under base_dir.
        if len(self.base_dir) > 80:
            raise RuntimeError("work directory path too long for Dovecot's sockets: %s"
                               % self.workdir)
        os.makedirs(self.state_dir, exist_ok=True)
        os.makedirs(self.mail_root, exist_ok=True)
        os.chown(self.mail_root, pwd.getpwnam(MAIL_USER).pw_uid, grp.getgrnam(MAIL_GROUP).gr_gid)
        os.chmod(self.mail_root, 0o700)

    def _write_users(self, users: list[tuple[str, str]]) -> None:
        rows = []
        for name, password in users:
            phc = self._hashes.get(password)
            if phc is None:
                phc = argon2id_phc(password, self.argon2_memory_kib, self.argon2_time_cost)
                self._hashes[password] = phc
            rows.append((name, "{ARGON2ID}" + phc))
        if os.path.exists(self.users_db):
            os.remove(self.users_db)
        with contextlib.closing(sqlite3.connect(self.users_db)) as db, db:
            db.execute("CREATE TABLE users (name TEXT PRIMARY KEY, password TEXT NOT NULL)")
            db.executemany("INSERT INTO users VALUES (?, ?)", rows)
        with open(self.sql_conf, "w") as f:
            f.write("driver = sqlite\n"
                    "connect = %s\n"
                    "password_query = SELECT name AS user, password FROM users "
                    "WHERE name = '%%u'\n" % self.users_db)
        # The auth workers run as the dovecot user and only read these.
        dovecot_gid = grp.getgrnam("dovecot").gr_gid
        for path in (self.users_db, self.sql_conf):
            os.chown(path, 0, dovecot_gid)
            os.chmod(path, 0o640)

    def _config(self) -> str:
        return CONFIG_TEMPLATE.format(
            base_dir=self.base_dir, state_dir=self.state_dir, log_path=self.log_path,
            cert=self.cert_file, key=self.key_file, dh=DH_PARAMS, sql_conf=self.sql_conf,
            mail_root=self.mail_root, mail_user=MAIL_USER, mail_group=MAIL_GROUP,
            imap_port=self.imap_port, imaps_port=self.imaps_port, cores=_cores(),
            login_client_limit=LOGIN_CLIENT_LIMIT, login_process_limit=LOGIN_PROCESS_LIMIT,
            max_connections=MAX_CONNECTIONS,
            hibernate_timeout=HIBERNATE_TIMEOUT_S if self.hibernate else 0,
            hibernate_client_limit=HIBERNATE_CLIENT_LIMIT,
            single_process_client_limit=SINGLE_PROCESS_CLIENT_LIMIT)

    def _raise_inotify_limit(self) -> None:
        """Raises the per-user inotify instance limit for the run; stop() restores it.

        If /proc/sys is read-only, Dovecot still runs; describe() says so.
        """
        with open(INOTIFY_INSTANCES) as f:
            self._inotify_limit = int(f.read())
        if self._inotify_limit >= INOTIFY_INSTANCES_WANTED:
            return
        try:
            with open(INOTIFY_INSTANCES, "w") as f:
                f.write("%d\n" % INOTIFY_INSTANCES_WANTED)
        except OSError:
            return
        self._inotify_restore = self._inotify_limit
        self._inotify_limit = INOTIFY_INSTANCES_WANTED

    def _wait_ready(self, user: tuple[str, str]) -> None:
        deadline = time.monotonic() + 30
        last_error = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError("dovecot exited with status %d:\n%s"
                                   % (self._proc.returncode, self._log_tail()))
            try:
                with imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10) as imap:
                    imap.login(*user)
                    imap.logout()
                with imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, timeout=10,
                                       ssl_context=_client_tls()) as imap:
                    imap.noop()
                return
            except (OSError, imaplib.IMAP4.error) as e:
                last_error = e
                time.sleep(0.1)
        raise RuntimeError("dovecot not ready after 30 s (%s):\n%s"
                           % (last_error, self._log_tail()))

    def _log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    @staticmethod
    def _group_members(group: int) -> list[int]:
        members = []
        for pid in _all_pids():
            fields = _proc_stat(pid)
            if fields and int(fields[2]) == group and fields[0] != "Z":  # field 5: pgrp
                members.append(pid)
        return members


# Self-contained: nothing from /etc/dovecot is included. Values in single
# braces are filled by Dovecot._config(); doubled braces are Dovecot's own.
CONFIG_TEMPLATE = """\
# Written by bench/suite/dovecot.py for one bench run.
protocols = imap
listen = 127.0.0.1
base_dir = {base_dir}
state_dir = {state_dir}
instance_name = dovecot-bench
log_path = {log_path}

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_dh = <{dh}
ssl_min_protocol = TLSv1.2
# The plain port accepts LOGIN too, so both systems can be driven without TLS.
disable_plaintext_auth = no

# An SQL passdb, as large installations use. SQLite is a blocking driver, so
# each lookup and its argon2 verification run in auth-worker processes, on
# every core. No auth cache (the default): every LOGIN verifies the hash.
passdb {{
  driver = sql
  args = {sql_conf}
}}
service auth-worker {{
  # Needs no root (no /etc/shadow), so it runs as Dovecot's internal user.
  user = $default_internal_user
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={mail_root}/%u
}}
mail_location = maildir:~/Maildir

# The bench holds thousands of connections of one user from 127.0.0.1.
mail_max_userip_connections = {max_connections}

service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
    ssl = yes
  }}
  # High-performance mode: long-lived login processes, one per core ready.
  service_count = 0
  process_min_avail = {cores}
  client_limit = {login_client_limit}
  process_limit = {login_process_limit}
  vsz_limit = 2G
}}

service imap {{
  process_limit = {max_connections}
  # imap-hibernate (running as the dovecot user) hands thawed clients back here.
  unix_listener imap-master {{
    user = $default_internal_user
  }}
}}

# 0 turns hibernation off.
imap_hibernate_timeout = {hibernate_timeout}s
service imap-hibernate {{
  client_limit = {hibernate_client_limit}
  unix_listener imap-hibernate {{
    mode = 0660
    group = $default_internal_group
  }}
}}

service stats {{
  client_limit = {single_process_client_limit}
}}
service auth {{
  client_limit = {single_process_client_limit}
}}
"""


# --- self-test -------------------------------------------------------------
# Run by hand: python3 bench/suite/dovecot.py --self-test [--idle N]


class _Client:
    """A minimal IMAP client for the self-test: one command at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer, self.tag = reader, writer, 0

    @classmethod
    async def connect(cls, port: int, tls: bool) -> "_Client":
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=_client_tls() if tls else None)
        client = cls(reader, writer)
        await client.line()  # greeting
        return client

    async def line(self, timeout: float = 60) -> bytes:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line:
            raise ConnectionError("server closed the connection")
        return line

    async def command(self, text: bytes, literal: bytes | None = None) -> bytes:
        """Sends a command (with a LITERAL+ literal if given); returns the tagged line."""
        self.tag += 1
        tag = b"a%d" % self.tag
        if literal is None:
            self.writer.write(tag + b" " + text + b"\r\n")
        else:
            self.writer.write(b"%s %s {%d+}\r\n%s\r\n" % (tag, text, len(literal), literal))
        while True:
            line = await self.line()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError("%r failed: %r" % (text, line))
                return line

    async def login(self, user: tuple[str, str]) -> None:
        await self.command(b"LOGIN %s %s" % (user[0].encode(), user[1].encode()))

    async def idle(self) -> None:
        self.writer.write(b"i IDLE\r\n")
        line = await self.line()
        if not line.startswith(b"+"):
            raise RuntimeError("IDLE refused: %r" % line)

    async def wait_exists(self) -> None:
        while True:
            line = await self.line(timeout=120)
            if line.startswith(b"* ") and line.rstrip().endswith(b" EXISTS"):
                return

    def close(self) -> None:
        self.writer.close()


MESSAGE = (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: self-test\r\n"
           b"Message-ID: <self-test@example.test>\r\n\r\nHello from the bench.\r\n")


def _pss_by_process(pids: list[int]) -> dict[str, list[int]]:
    """Process name -> [count, PSS KiB]. Auth workers show as "auth"."""
    import procstat  # beside this file
    found: dict[str, list[int]] = {}
    for pid in pids:
        name = procstat.comm(pid)
        if not name:
            continue  # exited meanwhile
        entry = found.setdefault(name, [0, 0])
        entry[0] += 1
        entry[1] += procstat.pss_kib([pid])
    return found


def _pss_kib(pids: list[int]) -> int:
    return sum(pss for _, pss in _pss_by_process(pids).values())


def _check_imaplib(d: Dovecot, user: tuple[str, str], tls: bool) -> None:
    if tls:
        imap = imaplib.IMAP4_SSL("127.0.0.1", d.imaps_port, ssl_context=_client_tls(), timeout=30)
    else:
        imap = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=30)
    with imap:
        imap.login(*user)
        typ, _ = imap.append("INBOX", None, None, MESSAGE)
        assert typ == "OK", typ
        typ, data = imap.select("INBOX")
        count = int(data[0])
        typ, data = imap.fetch(str(count), "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == MESSAGE, data
        imap.logout()
    print("  %s: LOGIN %s, APPEND, SELECT (%d messages), FETCH back: ok"
          % ("IMAPS" if tls else "plain", user[0], count))


def _check_login_cost(d: Dovecot, user: tuple[str, str], count: int) -> None:
    """Times LOGIN commands one at a time (connection set up beforehand)."""
    times = []
    cpu_before = d.cpu_seconds()
    for _ in range(count):
        with imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=30) as imap:
            start = time.perf_counter()
            imap.login(*user)
            times.append(time.perf_counter() - start)
            imap.logout()
    cpu_per_session = (d.cpu_seconds() - cpu_before) / count
    cli = []
    for _ in range(5):
        start = time.perf_counter()
        argon2id_phc("x", d.argon2_memory_kib, d.argon2_time_cost)
        cli.append(time.perf_counter() - start)
    print("  %d sequential LOGINs: median %.1f ms, min %.1f, max %.1f; Dovecot CPU per "
          "connect+LOGIN+LOGOUT %.1f ms (one hash by the argon2 CLI, same cost: %.1f ms)"
          % (count, statistics.median(times) * 1000, min(times) * 1000, max(times) * 1000,
             cpu_per_session * 1000, statistics.median(cli) * 1000))
    assert min(times) > 0.005, "LOGIN too fast to have run argon2id"

    start = time.perf_counter()
    try:
        with imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=30) as imap:
            imap.login(user[0], "wrong")
        raise AssertionError("LOGIN with a wrong password succeeded")
    except imaplib.IMAP4.error as e:
        print("  wrong password refused after %.1f s (auth_failure_delay): %s"
              % (time.perf_counter() - start, e))


async def _parallel_logins(d: Dovecot, user: tuple[str, str], clients: int,
                           each: int) -> float:
    """Logins per second with `clients` clients logging in `each` times."""
    async def one_client():
        for _ in range(each):
            client = await _Client.connect(d.imap_port, tls=False)
            await client.login(user)
            await client.command(b"LOGOUT")
            client.close()
    start = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    return clients * each / (time.perf_counter() - start)


async def _idler(d: Dovecot, user: tuple[str, str], tls: bool) -> _Client:
    client = await _Client.connect(d.imaps_port if tls else d.imap_port, tls)
    await client.login(user)
    await client.command(b"SELECT INBOX")
    await client.idle()
    return client


async def _push_latency(d: Dovecot, idlers: list[_Client],
                        appender: tuple[str, str]) -> list[float]:
    """APPENDs one message as appender; seconds until each idler saw EXISTS."""
    client = await _Client.connect(d.imap_port, tls=False)
    await client.login(appender)
    start = time.perf_counter()

    async def seen(idler):
        await idler.wait_exists()
        return time.perf_counter() - start
    waits = [asyncio.ensure_future(seen(idler)) for idler in idlers]
    await client.command(b"APPEND INBOX", MESSAGE)
    latencies = await asyncio.gather(*waits)
    await client.command(b"LOGOUT")
    client.close()
    return latencies


async def _check_push(d: Dovecot, user: tuple[str, str]) -> None:
    """IDLE push to one idler, first still in its imap process, then hibernated."""
    for label, delay in (("still in its imap process", 0),
                         ("hibernated", HIBERNATE_TIMEOUT_S + 2)):
        idler = await _idler(d, user, tls=False)
        await asyncio.sleep(delay)
        processes = _pss_by_process(d.pids())
        latency = (await _push_latency(d, [idler], user))[0]
        idler.writer.write(b"DONE\r\n")
        await idler.command(b"LOGOUT")
        idler.close()
        print("  IDLE push to an idler %s: EXISTS after %.1f ms (imap processes: %d, "
              "imap-hibernate: %d)" % (label, latency * 1000, processes.get("imap", [0])[0],
                                       processes.get("imap-hibernate", [0])[0]))


async def _check_many_idlers(d: Dovecot, users: list[tuple[str, str]], count: int,
                             tls: bool) -> None:
    before = _pss_kib(d.pids())
    limit = asyncio.Semaphore(32)

    async def open_one(i):
        async with limit:
            return await _idler(d, users[i % len(users)], tls)
    start = time.perf_counter()
    idlers = await asyncio.gather(*(open_one(i) for i in range(count)))
    opened_s = time.perf_counter() - start
    await asyncio.sleep(HIBERNATE_TIMEOUT_S + 3)
    by_process = _pss_by_process(d.pids())
    after = sum(pss for _, pss in by_process.values())
    print("  %d %s connections in IDLE (opened in %.1f s, %.0f logins/s): Dovecot PSS "
          "%d -> %d KiB, %.1f KiB per connection; by process [count, PSS KiB]: %s"
          % (count, "IMAPS" if tls else "plain", opened_s, count / opened_s,
             before, after, (after - before) / count, by_process))
    # One APPEND to users[0]'s INBOX wakes each of its idlers.
    woken = idlers[::len(users)]
    latencies = sorted(await _push_latency(d, woken, users[0]))
    print("  one APPEND reached %d idlers of %s: EXISTS p50 %.0f ms, max %.0f ms"
          % (len(woken), users[0][0], latencies[len(latencies) // 2] * 1000,
             latencies[-1] * 1000))
    for idler in idlers:
        idler.close()
    await asyncio.sleep(2)


async def _async_checks(d: Dovecot, users: list[tuple[str, str]], idle_count: int) -> None:
    await _check_push(d, users[2])
    clients = _cores() * 2
    rate = await _parallel_logins(d, users[0], clients, each=10)
    print("  parallel LOGIN throughput with %d clients: %.1f logins/s" % (clients, rate))
    for tls in (False, True):
        await _check_many_idlers(d, users, idle_count, tls)


def _self_test(idle_count: int) -> None:
    problem = check_installed()
    if problem:
        sys.exit(problem)
    workdir = tempfile.mkdtemp(prefix="dovecot-selftest-")
    os.chmod(workdir, 0o711)
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    users = [("alice", "secret-1"), ("bob", "secret-1"), ("carol", "secret-2")]
    d = Dovecot(os.path.join(workdir, "dovecot"), cert, key)
    try:
        start = time.perf_counter()
        d.start(users)
        print("started %s in %.2f s: imaps %d, imap %d, %d processes, work dir %s"
              % (d.version(), time.perf_counter() - start, d.imaps_port, d.imap_port,
                 len(d.pids()), d.workdir))
        assert len(d._hashes) == 2, "one argon2 run per distinct password"
        _check_imaplib(d, users[0], tls=True)
        _check_imaplib(d, users[1], tls=False)
        _check_login_cost(d, users[0], 20)
        asyncio.run(_async_checks(d, users, idle_count))
        print(d.describe())
        pids = d.pids()
        with open(d.log_path, errors="replace") as f:
            problems = [line.rstrip() for line in f if ": Info: " not in line]
    finally:
        d.stop()
    left = [pid for pid in pids if _alive(pid)]
    assert not left, "dovecot processes left after stop(): %s" % left
    d.stop()  # idempotent
    print("stopped; no dovecot process left; log lines above Info before stop: %d"
          % len(problems))
    for line in problems[:10]:
        print("   ", line)
    assert not [line for line in problems if ": Error: " in line or ": Fatal: " in line]
    shutil.rmtree(workdir)
    print("self-test passed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--self-test", action="store_true", required=True)
    parser.add_argument("--idle", type=int, default=2000,
                        help="IDLE connections to open in each of the plain and TLS phases")
    _self_test(parser.parse_args().idle)
