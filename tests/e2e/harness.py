"""Starts the real system for end-to-end tests: a mailbox service on a fresh data
directory, users created with mailbox-admin, and one or more IMAP gateways with a
self-signed certificate. Everything listens on 127.0.0.1 with ports chosen by the
kernel, and everything is stopped by stop()."""

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


def runfile(path, bin_dir=None):
    # bin_dir (or IMAPD_BIN_DIR): a tree of binaries from another build, say an
    # earlier commit's, to measure before and after in one bench run; paths it does
    # not hold are looked up as usual.
    override = bin_dir or os.environ.get("IMAPD_BIN_DIR")
    if override and os.path.exists(os.path.join(override, path)):
        return os.path.join(override, path)
    srcdir = os.environ.get("TEST_SRCDIR")
    if srcdir:
        return os.path.join(srcdir, "imapd", path)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # Outside Bazel: the default (OpenSSL) configuration's outputs. bazel-bin may point
    # at another configuration (e.g. --config=boringssl) after someone else's build.
    for out in (os.path.join(root, "bazel-out", "k8-opt", "bin"), os.path.join(root, "bazel-bin")):
        candidate = os.path.join(out, path)
        if os.path.exists(candidate):
            return candidate
    return os.path.join(root, "bazel-bin", path)


SERVICE = runfile("mailbox-service/server/mailbox-service")
ADMIN = runfile("mailbox-service/admin/mailbox-admin")
GATEWAY = runfile("gateway/imap-gateway")


_FLAGS_OF = {}


def _has_flag(binary, flag):
    """True if `binary --help` lists `flag`."""
    if binary not in _FLAGS_OF:
        result = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
        _FLAGS_OF[binary] = result.stdout + result.stderr
    return flag in _FLAGS_OF[binary]


def argon2_memory_flag(binary, kib):
    """The service flag of the argon2id memory cost: --argon2-memory takes a size;
    binaries of an earlier commit (the bench runs them side by side) have
    --argon2-memory-kib."""
    if _has_flag(binary, "--argon2-memory="):
        return "--argon2-memory=%dKiB" % kib
    return "--argon2-memory-kib=%d" % kib


def _wait_for_file(path, process, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return
        if process.poll() is not None:
            raise RuntimeError("%s exited with %s during start" % (what, process.returncode))
        time.sleep(0.02)
    raise RuntimeError("%s did not start in %.0f s" % (what, timeout))


def http_get(port, path):
    """(status, content type, body) of GET http://127.0.0.1:port/path; error statuses
    are answers too."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read().decode()


def scrape_metrics(port):
    """The samples of GET /metrics as {'name{labels}': value}, and the raw text."""
    status, content_type, text = http_get(port, "/metrics")
    assert status == 200, (status, text)
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples, text


def metric_total(port, selector):
    """The value of `selector` in GET /metrics: a metric name, or a name with some of
    its labels ('name{reason="x"}'), summed over every series that matches (e.g. over
    the listeners). Fails if no series matches."""
    name, _, labels = selector.partition("{")
    wanted = set(re.findall(r'(\w+)="([^"]*)"', labels))
    total = None
    for key, value in scrape_metrics(port)[0].items():
        key_name, _, key_labels = key.partition("{")
        if key_name == name and wanted <= set(re.findall(r'(\w+)="([^"]*)"', key_labels)):
            total = (total or 0) + value
    if total is None:
        raise AssertionError("no %s in /metrics" % selector)
    return int(total) if total.is_integer() else total


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, process, timeout=10, what="haproxy"):
    """Waits until 127.0.0.1:port accepts connections; fails if `process` exits first
    or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("%s exited with %s" % (what, process.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not listen on %d" % (what, port))


class HaProxy:
    """An haproxy process of our own on `config` (a configuration text, written to
    directory/NAME.cfg; its output goes to directory/NAME.log), in the foreground,
    started once it listens on each of `ports` and stopped by stop()."""

    def __init__(self, config, directory, ports, name="haproxy"):
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.path.exists(binary):
            raise RuntimeError("haproxy not found: install it (tools/install-deps.sh)")
        self.config_path = os.path.join(directory, name + ".cfg")
        with open(self.config_path, "w") as f:
            f.write(config)
        self.log_path = os.path.join(directory, name + ".log")
        with open(self.log_path, "w") as log:
            # -db: stay in the foreground, no daemon; -W is not used (no master).
            self.process = subprocess.Popen([binary, "-db", "-f", self.config_path],
                                            stdout=log, stderr=subprocess.STDOUT)
        try:
            for port in ports:
                wait_listening(port, self.process)
        except RuntimeError as error:
            self.stop()
            raise RuntimeError("%s; see %s" % (error, self.log_path)) from None

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OAuthIssuer:
    """The identity provider's side for tests of OAuth 2.0 bearer tokens: an Ed25519
    signing key whose JWK Set the mailbox service reads (service_flags()), and JWT
    access tokens signed with it (python3-cryptography)."""

    ISSUER = "https://id.test.example"
    AUDIENCE = "imap.test.example"

    def __init__(self, directory, kid="test-key-1"):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        self.key = Ed25519PrivateKey.generate()
        self.kid = kid
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)
        self.jwks_path = os.path.join(directory, "jwks.json")
        with open(self.jwks_path, "w") as f:
            json.dump({"keys": [{"kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": kid,
                                 "x": _b64url(raw)}]}, f)

    def service_flags(self):
        return ("--oauth-jwks=" + self.jwks_path, "--oauth-issuer=" + self.ISSUER,
                "--oauth-audience=" + self.AUDIENCE)

    def token(self, user, lifetime=600, **claims):
        """A token naming `user` in "email" (the service's default user claim) that
        expires `lifetime` seconds from now (negative: already expired)."""
        now = int(time.time())
        body = {"iss": self.ISSUER, "aud": self.AUDIENCE, "email": user, "iat": now,
                "exp": now + lifetime}
        body.update(claims)
        header = {"alg": "EdDSA", "typ": "JWT", "kid": self.kid}
        signing_input = "%s.%s" % (_b64url(json.dumps(header).encode()),
                                   _b64url(json.dumps(body).encode()))
        return "%s.%s" % (signing_input, _b64url(self.key.sign(signing_input.encode())))


class Gateway:
    def __init__(self, process, ports, log_path):
        self.process = process
        self.imap_port = ports["imap"]
        self.imaps_port = ports["imaps"]
        self.http_port = ports.get("http", 0)
        self.log_path = log_path

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def alive(self):
        return self.process.poll() is None

    def wait_ready(self, timeout=30.0):
        """Waits until GET /readyz answers 200: listening, and a mailbox service is
        connected and serving. A load balancer sends no client before that."""
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = http_get(self.http_port, "/readyz")
            if status == 200:
                return
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError("imap-gateway not ready: /readyz said %d %r" % (status, body))
            time.sleep(0.05)


class System:
    def __init__(self, name="e2e", base=None, bin_dir=None):
        """bin_dir: run the service, gateway and admin tool from this tree of binaries
        (runfile) instead of this build's."""
        self.service_bin = runfile("mailbox-service/server/mailbox-service", bin_dir)
        self.admin_bin = runfile("mailbox-service/admin/mailbox-admin", bin_dir)
        self.gateway_bin = runfile("gateway/imap-gateway", bin_dir)
        base = base or os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
        self.dir = os.path.join(base, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "data"))
        self.service = None
        self.gateways = []
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        subprocess.run(
            # ECDSA P-256, as tools/run.sh makes: cheap handshakes for the bench's logins.
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", self.key,
             "-out", self.cert, "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True)

    def start_service(self, *flags, tls=None, default_mailboxes="", stderr_path=None):
        """tls: None (plaintext on loopback) or a dict with "cert", "key" and optionally
        "client_ca" and "require_client_cert" (default True) for the gRPC listener.
        default_mailboxes: --default-mailboxes; "" (users start with INBOX alone, so
        that tests see only the mailboxes they make) or None for the service's own
        default. stderr_path: where the service's logs (stderr) go, apart from its
        stdout (default: both in service.log)."""
        if tls:
            require = tls.get("require_client_cert", True)
            link = ["--tls-cert-file=" + tls["cert"], "--tls-key-file=" + tls["key"],
                    "--tls-require-client-cert=" + ("true" if require else "false")]
            if tls.get("client_ca"):
                link.append("--tls-client-ca-file=" + tls["client_ca"])
            flags = tuple(link) + tuple(flags)
        data = os.path.join(self.dir, "data")
        port_file = os.path.join(data, "port")
        if os.path.exists(port_file):
            os.remove(port_file)
        listen = "127.0.0.1:%d" % getattr(self, "service_port", 0)
        # (Binaries of an earlier commit, which the bench runs side by side, may
        # predate the flag; they make INBOX alone anyway.)
        if default_mailboxes is not None and _has_flag(self.service_bin, "--default-mailboxes"):
            flags = ("--default-mailboxes=" + default_mailboxes,) + tuple(flags)
        # The operator endpoint on a free port (tests and benches run side by side);
        # its port is in data/http-port.
        self.service_http_port = 0
        http_port_file = os.path.join(data, "http-port")
        if os.path.exists(http_port_file):
            os.remove(http_port_file)
        if _has_flag(self.service_bin, "--http-port-file"):
            flags = ("--http-listen=127.0.0.1:0",
                     "--http-port-file=" + http_port_file) + tuple(flags)
        with open(os.path.join(self.dir, "service.log"), "a") as log, \
                open(stderr_path or os.devnull, "a") as err:
            self.service = subprocess.Popen(
                [self.service_bin, "--listen=" + listen, "--data-dir=" + data, "--port-file=" + port_file,
                 argon2_memory_flag(self.service_bin, 64), "--argon2-time-cost=1",
                 # Tests make many failed logins on purpose; the per-connection limit of
                 # the gateway is what they check, not the service's throttling.
                 "--auth-user-free-failures=100000", "--auth-ip-free-failures=100000"]
                + list(flags),
                stdout=log, stderr=err if stderr_path else subprocess.STDOUT)
        _wait_for_file(port_file, self.service, "mailbox-service")
        with open(port_file) as f:
            self.service_port = int(f.read())
        if os.path.exists(http_port_file):
            with open(http_port_file) as f:
                self.service_http_port = int(f.read())
        self.service_target = "127.0.0.1:%d" % self.service_port
        return self

    def admin(self, *args, stdin=None, tls=None):
        """tls: the link's files for mailbox-admin, a dict with "ca" and optionally "cert"
        and "key"; default self.admin_tls (None: plaintext)."""
        env = dict(os.environ, MAILBOX_SERVER=self.service_target,
                   MAILBOX_ADMIN_TOKEN_FILE=os.path.join(self.dir, "data", "admin.token"))
        tls = tls if tls is not None else getattr(self, "admin_tls", None)
        for key, variable in (("ca", "MAILBOX_CA_FILE"), ("cert", "MAILBOX_CERT_FILE"),
                              ("key", "MAILBOX_KEY_FILE")):
            if tls and tls.get(key):
                env[variable] = tls[key]
        result = subprocess.run([self.admin_bin] + list(args), env=env, input=stdin,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError("mailbox-admin %s: %s" % (" ".join(args), result.stderr))
        return result.stdout

    def add_user(self, name, password):
        self.admin("user", "add", name, "--password", password)

    def new_user(self, prefix="user", password="secret-pw"):
        """Creates a user with a fresh name; returns (name, password)."""
        self._users = getattr(self, "_users", 0) + 1
        name = "%s%d" % (prefix, self._users)
        self.add_user(name, password)
        return name, password

    def start_gateway(self, *flags, store_tls=None, store_token_file=None, stderr_path=None):
        """store_tls: the link to the service, a dict with "ca" and optionally "cert",
        "key" and "server_name" (None: plaintext). store_token_file: the gateway token
        the gateway sends (None: the service's, data/gateway.token; "": none).
        stderr_path: where the gateway's logs (stderr) go, apart from its stdout
        (default: both in gatewayN.log)."""
        if store_token_file is None:
            store_token_file = os.path.join(self.dir, "data", "gateway.token")
        if store_token_file:
            flags = ("--store-token-file=" + store_token_file,) + tuple(flags)
        for key, flag in (("ca", "--store-ca-file="), ("cert", "--store-cert-file="),
                          ("key", "--store-key-file="),
                          ("server_name", "--store-tls-server-name=")):
            if store_tls and store_tls.get(key):
                flags = (flag + store_tls[key],) + tuple(flags)
        index = len(self.gateways)
        ports_file = os.path.join(self.dir, "gateway%d.ports" % index)
        log_path = os.path.join(self.dir, "gateway%d.log" % index)
        if os.path.exists(ports_file):  # left by a gateway stopped before this one
            os.remove(ports_file)
        with open(log_path, "a") as log, open(stderr_path or os.devnull, "a") as err:
            process = subprocess.Popen(
                [self.gateway_bin, "--store=" + self.service_target,
                 "--imap-listen=127.0.0.1:0", "--imaps-listen=127.0.0.1:0",
                 "--http-listen=127.0.0.1:0",
                 "--tls-cert-file=" + self.cert, "--tls-key-file=" + self.key, "--workers=2",
                 # No balancer to wait for when a test stops the gateway (a test of
                 # the drain gives its own grace period, which comes later and wins).
                 "--shutdown-grace=0s",
                 "--ports-file=" + ports_file] + list(flags),
                stdout=log, stderr=err if stderr_path else subprocess.STDOUT)
        _wait_for_file(ports_file, process, "imap-gateway")
        with open(ports_file) as f:
            gateway = Gateway(process, json.load(f), log_path)
        self.gateways.append(gateway)
        return gateway

    def stop_service(self, sig=signal.SIGTERM):
        if self.service and self.service.poll() is None:
            self.service.send_signal(sig)
            self.service.wait(timeout=30)
        self.service = None

    def stop(self):
        for gateway in self.gateways:
            if gateway.process.poll() is None:
                gateway.process.send_signal(signal.SIGTERM)
                try:
                    gateway.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    gateway.process.kill()
        self.gateways = []
        self.stop_service()
