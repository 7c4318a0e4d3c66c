"""The Kubernetes manifests (deploy/kubernetes), rendered and checked with no cluster.

Renders both overlays, alone and with each cloud component, with the project's
renderer (tools/render.py) and, when a kubectl is installed, compares that with
`kubectl kustomize`; runs yamllint strictly; checks every object against the
Kubernetes API models and the references between them (tools/check.py); checks that
make-secrets.sh makes what the manifests expect; runs the real service and gateway
on the token files as the pods get them; and proves that the checker rejects a
misspelled field, a wrong type, a missing required field and a duplicate key, and
each kind of broken reference.
"""
import base64
import copy
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest

import yaml

SRCDIR = os.environ.get("TEST_SRCDIR")
if SRCDIR:
    ROOT = os.path.join(SRCDIR, "imapd")
else:
    ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KUBE = os.path.join(ROOT, "deploy", "kubernetes")
sys.path.insert(0, os.path.join(KUBE, "tools"))
import check  # noqa: E402
import render  # noqa: E402

OVERLAYS = ("sqlite", "postgres")
COMPONENTS = ("aws", "gcp", "azure", "digitalocean", "hetzner", "ovh")
PROXY_PROTOCOL_CLOUDS = {"aws", "digitalocean", "hetzner", "ovh"}
CONNINFO = "host=db.example.org dbname=mail user=mail password=s3cret sslmode=verify-full"
# Settings these manifests use that come with the gateway's and the service's drain,
# logging and operator-endpoint work (NAMES of the project); the binaries' --help
# lists them once that work is in, and this set then only repeats it.
SETTINGS_ADDED_ALONGSIDE = {
    "IMAPD_SHUTDOWN_GRACE", "IMAPD_LOG_FORMAT", "MAILBOX_HTTP_LISTEN",
    "MAILBOX_DRAIN_TIMEOUT", "MAILBOX_LOG_FORMAT",
}
BINARIES = {
    "imap-gateway": ("gateway", "imap-gateway"),
    "mailbox-service": ("mailbox-service", "server", "mailbox-service"),
    "mailbox-admin": ("mailbox-service", "admin", "mailbox-admin"),
}


def binary(name):
    """The path of one of BINARIES: in the runfiles under Bazel, else in bazel-bin (by
    hand, after bazel build)."""
    parts = BINARIES[name]
    return os.path.join(ROOT, *parts) if SRCDIR else os.path.join(ROOT, "bazel-bin", *parts)


def tmpdir():
    base = os.environ.get("TEST_TMPDIR") or tempfile.gettempdir()
    return tempfile.mkdtemp(dir=base)


def copy_tree():
    """A writable copy of deploy/kubernetes with make-secrets.sh's files in it."""
    dest = os.path.join(tmpdir(), "kubernetes")
    shutil.copytree(KUBE, dest, symlinks=False,
                    ignore=shutil.ignore_patterns("secrets", "__pycache__"))
    subprocess.run(["bash", os.path.join(dest, "make-secrets.sh"), "--dir", dest,
                    "--postgres", CONNINFO], check=True, stdout=subprocess.DEVNULL)
    return dest


def read(path):
    with open(path) as f:
        return f.read()


def admin_job():
    return render.load_yaml_file(os.path.join(KUBE, "examples", "admin-job.yaml"))


def examples(overlay):
    """The example Jobs that go with an overlay."""
    jobs = admin_job()
    if overlay == "postgres":
        jobs += render.load_yaml_file(os.path.join(KUBE, "examples", "migrate-job.yaml"))
    return jobs


def known_env():
    """Every IMAPD_*/MAILBOX_* name the three binaries' --help mentions."""
    names = set(SETTINGS_ADDED_ALONGSIDE)
    for name in BINARIES:
        path = binary(name)
        out = subprocess.run([path, "--help"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=30, env={"PATH": "/usr/bin"})
        text = out.stdout.decode(errors="replace")
        found = set(re.findall(r"\b(?:IMAPD|MAILBOX)_[A-Z0-9_]+\b", text))
        if len(found) < 5:
            raise AssertionError(f"{path} --help names only {sorted(found)}:\n{text[:2000]}")
        names |= found
    return names


def find(objects, kind, name):
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"].get("name") == name:
            return obj
    raise AssertionError(f"no {kind}/{name}")


def container(obj, name):
    spec = obj["spec"]["template"]["spec"]
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name}")


def env_of(c):
    return {e["name"]: e for e in c.get("env", [])}


class Fixture(unittest.TestCase):
    tree = None
    rendered = {}
    rendered_combined = {}
    env_names = None

    @classmethod
    def setUpClass(cls):
        if Fixture.tree is None:
            Fixture.tree = copy_tree()
            for overlay in OVERLAYS:
                Fixture.rendered[overlay] = render.render(
                    os.path.join(Fixture.tree, "overlays", overlay))

    def combined(self, overlay, cloud):
        """A kustomization of an overlay with a cloud component, as an operator writes."""
        d = os.path.join(self.tree, "combined", f"{overlay}-{cloud}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "kustomization.yaml"), "w") as f:
            f.write(f"resources: [../../overlays/{overlay}]\n"
                    f"components: [../../components/cloud-{cloud}]\n")
        return d

    def render_combined(self, overlay, cloud):
        """The objects of combined(overlay, cloud), rendered once for every test."""
        key = (overlay, cloud)
        if key not in Fixture.rendered_combined:
            Fixture.rendered_combined[key] = render.render(self.combined(overlay, cloud))
        return copy.deepcopy(Fixture.rendered_combined[key])

    def objects(self, overlay):
        return copy.deepcopy(self.rendered[overlay]) + examples(overlay)

    def assert_clean(self, objects, **kwargs):
        errors = check.check_all(objects, external_secrets={"alice-password"}, **kwargs)
        self.assertEqual(errors, [], "\n".join(errors))

    def assert_rejected(self, objects, *patterns):
        errors = check.check_all(objects, external_secrets={"alice-password"})
        text = "\n".join(errors)
        self.assertTrue(errors, "the checker accepted it")
        for pattern in patterns:
            self.assertRegex(text, pattern)
        print(f"    rejected as expected: {errors[0]}")


class RendererTest(unittest.TestCase):
    """tools/render.py on small inputs with known answers."""

    def write(self, directory, files):
        for name, text in files.items():
            path = os.path.join(directory, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)

    def test_strategic_merge_lists_by_key(self):
        base = {"spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "A", "value": "1"},
                                                {"name": "B", "value": "2"}],
             "args": ["--one"], "ports": [{"containerPort": 1, "name": "p"}]},
            {"name": "b", "image": "y"}]}}
        patch = {"spec": {"containers": [
            {"name": "a", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
             "args": ["--two"], "ports": [{"containerPort": 2, "name": "q"}]},
            {"name": "c", "image": "z"}]}}
        out = render.strategic_merge(base, patch)
        a = next(c for c in out["spec"]["containers"] if c["name"] == "a")
        # Merged in place; items only the patch has first (kustomize's order).
        self.assertEqual(a["env"], [{"name": "C", "value": "4"}, {"name": "A", "value": "1"},
                                    {"name": "B", "value": "3"}])
        self.assertEqual(a["args"], ["--two"])  # no merge key: replaced
        self.assertEqual([p["containerPort"] for p in a["ports"]], [2, 1])
        self.assertEqual([c["name"] for c in out["spec"]["containers"]], ["c", "a", "b"])
        self.assertEqual(base["spec"]["containers"][0]["args"], ["--one"])  # not mutated

    def test_strategic_merge_null_removes_and_service_ports_by_port(self):
        base = {"metadata": {"annotations": {"x": "1", "y": "2"}},
                "spec": {"ports": [{"name": "imaps", "port": 993, "targetPort": 1}]}}
        patch = {"metadata": {"annotations": {"x": None}},
                 "spec": {"ports": [{"port": 993, "targetPort": 2}]}}
        out = render.strategic_merge(base, patch)
        self.assertEqual(out["metadata"]["annotations"], {"y": "2"})
        self.assertEqual(out["spec"]["ports"], [{"name": "imaps", "port": 993, "targetPort": 2}])

    def test_kustomization_subset(self):
        d = tmpdir()
        self.write(d, {
            "base/kustomization.yaml": "resources: [d.yaml]\n"
                                       "images:\n- name: reg/app\n  newTag: '2.0'\n",
            "base/d.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n"
                           "spec:\n  template:\n    spec:\n      containers:\n"
                           "      - {name: app, image: reg/app:1.0}\n"
                           "      - {name: side, image: 'other:3@sha256:abc'}\n",
            "comp/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\n"
                                       "kind: Component\npatches:\n- path: p.yaml\n",
            "comp/p.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n"
                           "spec: {replicas: 3}\n",
            "top/kustomization.yaml": "namespace: ns\nresources: [../base]\n"
                                      "components: [../comp]\n"
                                      "images:\n- name: other\n  newName: reg/other\n"
                                      "  digest: sha256:def\n"
                                      "generatorOptions: {disableNameSuffixHash: true,"
                                      " labels: {l: v}}\n"
                                      "secretGenerator:\n- name: s\n  files: [k=f.txt]\n"
                                      "  literals: [a=b]\n",
            "top/f.txt": "hello\n",
        })
        objs = render.render(os.path.join(d, "top"))
        dep = find(objs, "Deployment", "app")
        self.assertEqual(dep["metadata"]["namespace"], "ns")
        self.assertEqual(dep["spec"]["replicas"], 3)
        images = [c["image"] for c in dep["spec"]["template"]["spec"]["containers"]]
        self.assertEqual(images, ["reg/app:2.0", "reg/other@sha256:def"])
        secret = find(objs, "Secret", "s")
        self.assertEqual(secret["type"], "Opaque")
        self.assertEqual(secret["metadata"], {"name": "s", "labels": {"l": "v"},
                                              "namespace": "ns"})
        self.assertEqual(base64.b64decode(secret["data"]["k"]), b"hello\n")
        self.assertEqual(base64.b64decode(secret["data"]["a"]), b"b")

    def test_refuses_what_it_does_not_implement(self):
        d = tmpdir()
        self.write(d, {"kustomization.yaml": "namePrefix: x-\nresources: []\n"})
        with self.assertRaisesRegex(render.RenderError, "namePrefix"):
            render.render(d)
        self.write(d, {"kustomization.yaml": "secretGenerator:\n- name: s\n  literals: [a=b]\n"})
        with self.assertRaisesRegex(render.RenderError, "disableNameSuffixHash"):
            render.render(d)
        self.write(d, {"kustomization.yaml": "resources: [d.yaml]\npatches:\n- path: p.yaml\n",
                       "d.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
                       "p.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: b}\n"})
        with self.assertRaisesRegex(render.RenderError, "matches 0 objects"):
            render.render(d)

    def test_duplicate_key_refused_by_loader(self):
        d = tmpdir()
        self.write(d, {"kustomization.yaml": "resources: [d.yaml]\n",
                       "d.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n"
                                 "  name: b\n"})
        with self.assertRaisesRegex(render.RenderError, "duplicate key 'name' at line 5"):
            render.render(d)


class ManifestsTest(Fixture):
    """The manifests as committed: lint, schema, references, project rules."""

    def test_yamllint_strict(self):
        out = subprocess.run(["yamllint", "-s", "-c", os.path.join(self.tree, ".yamllint"),
                              self.tree], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(out.returncode, 0, out.stdout.decode())

    def test_overlays_pass_every_check(self):
        if Fixture.env_names is None:
            Fixture.env_names = known_env()
        for overlay in OVERLAYS:
            with self.subTest(overlay=overlay):
                objects = self.objects(overlay)
                self.assert_clean(objects, known_env=self.env_names)
                kinds = sorted({o["kind"] for o in objects})
                print(f"    {overlay}: {len(objects)} objects ({', '.join(kinds)}) pass")

    def test_gateway_shape(self):
        for overlay in OVERLAYS:
            objs = self.rendered[overlay]
            gw = find(objs, "Deployment", "imap-gateway")
            self.assertNotIn("replicas", gw["spec"])  # the autoscaler's
            self.assertEqual(gw["metadata"]["namespace"], "imapd")
            spec = gw["spec"]["template"]["spec"]
            c = container(gw, "imap-gateway")
            env = env_of(c)
            self.assertEqual(c["image"], "localhost/imapd-gateway:dev")
            self.assertEqual(c["lifecycle"]["preStop"]["exec"]["command"],
                             ["/usr/bin/imap-gateway", "drain"])
            grace = check.seconds(env["IMAPD_SHUTDOWN_GRACE"]["value"])
            drain = check.seconds(env["IMAPD_DRAIN_TIMEOUT"]["value"])
            self.assertEqual((grace, drain), (5, 30))
            self.assertGreaterEqual(spec["terminationGracePeriodSeconds"], grace + drain + 5)
            self.assertEqual(env["IMAPD_IMAPS_LISTEN"]["value"], "0.0.0.0:9993")
            self.assertEqual(env["IMAPD_IMAP_LISTEN"]["value"], "0.0.0.0:9143")
            self.assertEqual(env["IMAPD_HTTP_LISTEN"]["value"], "0.0.0.0:8143")
            svc = find(objs, "Service", "imap-gateway")
            self.assertEqual(svc["spec"]["type"], "LoadBalancer")
            self.assertEqual({(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]},
                             {(993, "imaps"), (143, "imap")})
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            self.assertEqual(ports, {"imaps": 9993, "imap": 9143, "http": 8143})
            hpa = find(objs, "HorizontalPodAutoscaler", "imap-gateway")
            self.assertEqual(hpa["apiVersion"], "autoscaling/v2")

    def test_images_carry_the_overlay_tags(self):
        for overlay in OVERLAYS:
            images = set()
            for obj in self.rendered[overlay]:
                if obj["kind"] in ("Deployment", "StatefulSet"):
                    spec = obj["spec"]["template"]["spec"]
                    for c in spec["containers"] + spec.get("initContainers", []):
                        images.add(c["image"])
            images = sorted(images)
            self.assertEqual(images, ["localhost/imapd-gateway:dev",
                                      "localhost/imapd-mailbox-service:dev"])

    def test_service_per_overlay(self):
        sqlite = find(self.rendered["sqlite"], "StatefulSet", "mailbox-service")
        self.assertEqual(sqlite["spec"]["replicas"], 1)
        self.assertEqual(sqlite["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "data")
        self.assertEqual(env_of(container(sqlite, "mailbox-service"))["MAILBOX_BACKEND"]["value"],
                         "sqlite")
        self.assertNotIn("Deployment/mailbox-service",
                         {f"{o['kind']}/{o['metadata']['name']}" for o in self.rendered["sqlite"]})
        pg = find(self.rendered["postgres"], "Deployment", "mailbox-service")
        self.assertGreater(pg["spec"]["replicas"], 1)
        env = env_of(container(pg, "mailbox-service"))
        self.assertEqual(env["MAILBOX_BACKEND"]["value"], "postgres")
        ref = env["MAILBOX_POSTGRES"]["valueFrom"]["secretKeyRef"]
        secret = find(self.rendered["postgres"], "Secret", ref["name"])
        self.assertEqual(base64.b64decode(secret["data"][ref["key"]]).decode().strip(), CONNINFO)
        find(self.rendered["postgres"], "PodDisruptionBudget", "mailbox-service")

    def test_components_for_each_cloud(self):
        for overlay in OVERLAYS:
            for cloud in COMPONENTS:
                with self.subTest(overlay=overlay, cloud=cloud):
                    objects = self.render_combined(overlay, cloud)
                    self.assert_clean(objects + examples(overlay))
                    svc = find(objects, "Service", "imap-gateway")
                    annotations = svc["metadata"].get("annotations") or {}
                    self.assertTrue(annotations)
                    proxies = env_of(container(find(objects, "Deployment", "imap-gateway"),
                                               "imap-gateway")).get("IMAPD_TRUSTED_PROXIES")
                    if cloud in PROXY_PROTOCOL_CLOUDS:
                        self.assertTrue(any("proxy" in k for k in annotations), annotations)
                        self.assertRegex(proxies["value"], r"^[0-9a-f.:]+/[0-9]+$")
                    else:
                        self.assertIsNone(proxies)

    def test_kubectl_kustomize_agrees(self):
        """The project's renderer and kubectl's kustomize give the same objects."""
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            # Not in Debian 12 (kubernetes-client is kubectl 1.20 with kustomize 2.0.3,
            # too old for these files): only the project's renderer is used then.
            print("    kubectl not installed: the comparison with kustomize did not run")
            return
        version = subprocess.run([kubectl, "version", "--client"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, timeout=60).stdout.decode()
        print("    " + " / ".join(version.strip().splitlines()))
        targets = [(os.path.join(self.tree, "overlays", o), self.rendered[o]) for o in OVERLAYS]
        targets += [(self.combined(o, c), self.render_combined(o, c))
                    for o in OVERLAYS for c in COMPONENTS]
        for target, rendered in targets:
            with self.subTest(target=target):
                out = subprocess.run([kubectl, "kustomize", target], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, timeout=120)
                self.assertEqual(out.returncode, 0, out.stderr.decode())
                theirs = normalise(yaml.safe_load_all(out.stdout))
                ours = normalise(rendered)
                self.assertEqual(sorted(theirs), sorted(ours))
                for key in ours:
                    self.assertEqual(ours[key], theirs[key], key)
                print(f"    {os.path.relpath(target, self.tree)}: {len(ours)} objects "
                      "identical to kubectl kustomize")

    def test_make_secrets(self):
        link = os.path.join(self.tree, "base", "secrets", "link")
        for name, usage in (("service", "TLS Web Server Authentication"),
                            ("gateway", "TLS Web Client Authentication"),
                            ("admin", "TLS Web Client Authentication")):
            crt = os.path.join(link, f"{name}.crt")
            out = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(link, "ca.crt"),
                                  crt], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.assertEqual(out.returncode, 0, out.stdout.decode())
            text = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-text"],
                                  stdout=subprocess.PIPE, check=True).stdout.decode()
            self.assertIn(usage, text)
            if name == "service":
                self.assertIn("DNS:mailbox-service,", text)
        tokens = os.path.join(self.tree, "base", "secrets", "tokens")
        values = set()
        for name in ("gateway.token", "admin.token", "session.key"):
            with open(os.path.join(tokens, name)) as f:
                value = f.read()
            self.assertRegex(value, r"^[0-9a-f]{64}\n$")
            values.add(value)
        self.assertEqual(len(values), 3)
        # Run again: every file is kept.
        before = {n: read(os.path.join(tokens, n)) for n in os.listdir(tokens)}
        out = subprocess.run(["bash", os.path.join(self.tree, "make-secrets.sh"), "--dir",
                              self.tree], stdout=subprocess.PIPE, check=True)
        self.assertIn(b"every file was there already", out.stdout)
        self.assertEqual(before, {n: read(os.path.join(tokens, n)) for n in os.listdir(tokens)})


def secret_volume(directory, files):
    """A directory laid out as the kubelet lays out a Secret volume: the files in a
    timestamped directory, `..data` linking to it, and one symbolic link per key."""
    stamp = os.path.join(directory, "..2026_01_01_00_00_00.000000001")
    os.makedirs(stamp)
    for name, content in files.items():
        with open(os.path.join(stamp, name), "w") as f:
            f.write(content)
        os.chmod(os.path.join(stamp, name), 0o440)
    os.symlink(os.path.basename(stamp), os.path.join(directory, "..data"))
    for name in files:
        os.symlink(os.path.join("..data", name), os.path.join(directory, name))


def start_service(data_dir, extra=()):
    """Runs the real mailbox-service on data_dir (SQLite, loopback, any port) until it
    listens; returns (process, None) or (None, its output) if it exits first."""
    parent = os.path.dirname(data_dir)
    os.makedirs(parent, exist_ok=True)
    port_file = os.path.join(parent, "port")
    if os.path.exists(port_file):
        os.remove(port_file)
    log_path = os.path.join(parent, "service.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([binary("mailbox-service"), f"--data-dir={data_dir}",
                                 "--listen=127.0.0.1:0", f"--port-file={port_file}", *extra],
                                stdout=log, stderr=subprocess.STDOUT, env={"PATH": "/usr/bin"})
    for _ in range(1200):
        if os.path.exists(port_file) and os.path.getsize(port_file) > 0:
            return proc, None
        if proc.poll() is not None:
            return None, read(log_path)
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("mailbox-service neither listened nor exited within 60 s")


class TokenFilesTest(Fixture):
    """How the token files reach the binaries, against their real file checks: the
    service's --secrets-dir as the manifests set it, and the gateway's subPath."""

    def test_service_copies_the_secret_volume_it_would_refuse_to_read_in_place(self):
        for overlay, kind in (("sqlite", "StatefulSet"), ("postgres", "Deployment")):
            service = find(self.rendered[overlay], kind, "mailbox-service")
            spec = service["spec"]["template"]["spec"]
            self.assertNotIn("initContainers", spec, overlay)
            c = container(service, "mailbox-service")
            mount = next(m for m in c["volumeMounts"] if m["name"] == "tokens")
            self.assertTrue(mount.get("readOnly"), overlay)
            self.assertEqual(env_of(c)["MAILBOX_SECRETS_DIR"]["value"], mount["mountPath"],
                             overlay)
            volume = next(v for v in spec["volumes"] if v["name"] == "tokens")
            self.assertEqual(volume["secret"]["secretName"], "imapd-tokens", overlay)
            self.assertEqual(volume["secret"]["defaultMode"], 0o440, overlay)

        work = tmpdir()
        tokens = {name: os.urandom(32).hex() + "\n"
                  for name in ("admin.token", "gateway.token", "session.key")}
        secret = os.path.join(work, "tokens")
        os.makedirs(secret)
        secret_volume(secret, tokens)

        # Straight from the Secret volume, the service refuses to start.
        proc, output = start_service(os.path.join(work, "direct", "data"),
                                     [f"--session-key-file={secret}/session.key"])
        self.assertIsNone(proc)
        self.assertIn("is a symbolic link", output)
        print(f"    the service refuses the Secret volume: {output.strip().splitlines()[-1]}")

        # With --secrets-dir (MAILBOX_SECRETS_DIR in the pods), it copies the files and
        # starts on exactly the Secret's tokens, before and after a rotation.
        data = os.path.join(work, "pod", "data")
        for rotation in range(2):
            proc, output = start_service(data, [f"--secrets-dir={secret}"])
            self.assertIsNotNone(proc, output)
            self.assertEqual(os.stat(data).st_mode & 0o777, 0o700)
            for name, content in tokens.items():
                path = os.path.join(data, name)
                info = os.lstat(path)
                self.assertTrue(stat.S_ISREG(info.st_mode), name)
                self.assertEqual(info.st_mode & 0o777, 0o600, name)
                self.assertEqual(read(path), content)
            self.assertFalse([n for n in os.listdir(data) if n.endswith(".new")])
            # A SIGTERM in the first moments after the port file appears can end the
            # service by the signal's default action (3 times in 20 here): a thread
            # that gRPC starts before the service blocks the signal takes it. Past
            # that window it drains and exits 0, which is what is checked here.
            time.sleep(1)
            proc.terminate()
            self.assertEqual(proc.wait(timeout=60), 0)
            log = read(os.path.join(os.path.dirname(data), "service.log"))
            self.assertEqual(log.count("secret_installed"), 3, log)
            # A rotation: the kubelet swaps ..data to a new directory; the next start
            # of the pod copies the new tokens over the old ones.
            tokens = {name: os.urandom(32).hex() + "\n" for name in tokens}
            secret = os.path.join(work, f"tokens{rotation + 1}")
            os.makedirs(secret)
            secret_volume(secret, tokens)
        print("    the service starts on the copied tokens, before and after a rotation")

    def test_gateway_takes_the_subpath_token_and_refuses_the_link(self):
        """The gateway mounts gateway.token with subPath: a regular file of root, group
        10001 (fsGroup), mode 0440. Its Secret volume path would be a link."""
        gw = find(self.rendered["sqlite"], "Deployment", "imap-gateway")
        c = container(gw, "imap-gateway")
        mount = next(m for m in c["volumeMounts"] if m["name"] == "tokens")
        self.assertEqual(mount["subPath"], "gateway.token")
        self.assertEqual(env_of(c)["IMAPD_STORE_TOKEN_FILE"]["value"], mount["mountPath"])
        volume = next(v for v in gw["spec"]["template"]["spec"]["volumes"]
                      if v["name"] == "tokens")
        self.assertEqual(volume["secret"]["defaultMode"], 0o440)
        self.assertEqual(gw["spec"]["template"]["spec"]["securityContext"]["fsGroup"], 10001)

        work = tmpdir()
        secret = os.path.join(work, "tokens")
        os.makedirs(secret)
        secret_volume(secret, {"gateway.token": os.urandom(32).hex() + "\n"})
        # What the subPath mount shows: the file itself. Owned by another user here
        # (the kubelet's files are root's; this test may run as root itself).
        sub_path = os.path.join(work, "gateway.token")
        shutil.copyfile(os.path.join(secret, "..data", "gateway.token"), sub_path)
        os.chown(sub_path, 65534, 10001)
        os.chmod(sub_path, 0o440)
        imaps = os.path.join(self.tree, "base", "secrets", "imaps")

        def gateway(token_file):
            ports = os.path.join(work, "ports")
            if os.path.exists(ports):
                os.remove(ports)
            log_path = os.path.join(work, "gateway.log")
            with open(log_path, "w") as log:
                proc = subprocess.Popen(
                    [binary("imap-gateway"), f"--tls-cert-file={imaps}/tls.crt",
                     f"--tls-key-file={imaps}/tls.key",
                     "--imaps-listen=127.0.0.1:0", "--imap-listen=127.0.0.1:0",
                     "--http-listen=127.0.0.1:0", f"--ports-file={ports}",
                     "--store=127.0.0.1:1", f"--store-token-file={token_file}"],
                    stdout=log, stderr=subprocess.STDOUT, env={"PATH": "/usr/bin"})
            for _ in range(1200):
                if os.path.exists(ports) and os.path.getsize(ports) > 0:
                    time.sleep(1)  # as for the service, past the start-up moments
                    proc.terminate()
                    self.assertEqual(proc.wait(timeout=60), 0)
                    return 0, read(log_path)
                if proc.poll() is not None:
                    return proc.returncode, read(log_path)
                time.sleep(0.05)
            proc.kill()
            raise AssertionError("imap-gateway neither listened nor exited within 60 s")

        status, output = gateway(os.path.join(secret, "gateway.token"))
        self.assertEqual(status, 2, output)
        self.assertIn("is a symbolic link", output)
        print(f"    the gateway refuses the Secret volume's link: {output.strip().splitlines()[-1]}")
        status, output = gateway(sub_path)
        self.assertEqual(status, 0, output)
        self.assertNotIn("--store-token-file", output)
        print("    the gateway starts on the subPath file (uid 65534, group 10001, 0440)")


def normalise(objects):
    """Objects by identity; Secret data compared as decoded bytes (kustomize folds long
    base64 lines, which base64 decoders ignore)."""
    out = {}
    for obj in objects:
        obj = copy.deepcopy(obj)
        if obj.get("kind") == "Secret":
            obj["data"] = {k: base64.b64decode("".join(v.split()))
                           for k, v in (obj.get("data") or {}).items()}
        out[(obj["kind"], obj["metadata"]["name"])] = obj
    return out


class NegativeTest(Fixture):
    """Each mistake the checker exists for, made on purpose."""

    def gateway(self, objects):
        return find(objects, "Deployment", "imap-gateway")

    def test_misspelled_field(self):
        objects = self.objects("sqlite")
        c = container(self.gateway(objects), "imap-gateway")
        c["imagePullPolcy"] = c.pop("imagePullPolicy")
        self.assert_rejected(objects, r"unknown field 'imagePullPolcy' in V1Container "
                                      r"\(did you mean imagePullPolicy\?\)")

    def test_command_line_tools(self):
        """render.py and check.py as an operator runs them, on files."""
        tools = os.path.join(self.tree, "tools")
        out = subprocess.run([sys.executable, os.path.join(tools, "render.py"),
                              os.path.join(self.tree, "overlays", "postgres")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
        rendered = os.path.join(tmpdir(), "all.yaml")
        with open(rendered, "wb") as f:
            f.write(out.stdout)
        jobs = [os.path.join(self.tree, "examples", n) for n in ("admin-job.yaml",
                                                                 "migrate-job.yaml")]
        command = [sys.executable, os.path.join(tools, "check.py"), "--external-secret",
                   "alice-password", rendered, *jobs]
        out = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(out.returncode, 0, out.stdout.decode())
        self.assertIn(b"20 objects, 0 problems", out.stdout)
        with open(rendered) as f:
            text = f.read()
        self.assertIn("    terminationGracePeriodSeconds: 45\n", text)
        with open(rendered, "w") as f:
            f.write(text.replace("    terminationGracePeriodSeconds: 45\n",
                                 "    terminationGracePeriodSecond: 45\n", 1))
        out = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(out.returncode, 1)
        self.assertIn(b"unknown field 'terminationGracePeriodSecond' in V1PodSpec (did you mean "
                      b"terminationGracePeriodSeconds?)", out.stdout)
        print("    " + out.stdout.decode().splitlines()[0])

    def test_misspelled_field_in_service_monitor(self):
        objects = self.objects("sqlite")
        monitor = find(objects, "ServiceMonitor", "imap-gateway")
        monitor["spec"]["endpoint"] = monitor["spec"].pop("endpoints")
        self.assert_rejected(objects, r"unknown field 'endpoint' \(did you mean endpoints\?\)",
                             r"missing required field 'endpoints'")

    def test_wrong_type(self):
        objects = self.objects("postgres")
        find(objects, "Deployment", "mailbox-service")["spec"]["replicas"] = "3"
        self.assert_rejected(objects, r"spec.replicas: expected an integer, got str '3'")
        objects = self.objects("postgres")
        env = container(self.gateway(objects), "imap-gateway")["env"]
        env.append({"name": "IMAPD_MAX_CONNECTIONS", "value": 4})
        self.assert_rejected(objects, r"value: expected a string, got int 4 \(quote it\)")
        objects = self.objects("postgres")
        find(objects, "ServiceMonitor", "mailbox-service")["spec"]["endpoints"][0][
            "interval"] = "30"
        self.assert_rejected(objects, r"expected a duration such as 30s, got '30'")

    def test_migrate_job_needs_the_postgres_secret(self):
        objects = self.objects("postgres")
        secret = find(objects, "Secret", "mailbox-postgres")
        objects.remove(secret)
        self.assert_rejected(objects, r"Job/mailbox-migrate- container mailbox-admin: "
                                      r"Secret 'mailbox-postgres' is not defined")

    def test_missing_required_field(self):
        objects = self.objects("sqlite")
        del container(self.gateway(objects), "imap-gateway")["name"]
        self.assert_rejected(objects, r"missing required field 'name' of V1Container")
        objects = self.objects("sqlite")
        del self.gateway(objects)["spec"]["selector"]
        self.assert_rejected(objects, r"missing required field 'selector' of V1DeploymentSpec")

    def test_duplicate_key(self):
        d = os.path.join(tmpdir(), "kubernetes")
        shutil.copytree(self.tree, d)
        path = os.path.join(d, "base", "gateway-deployment.yaml")
        with open(path) as f:
            text = f.read()
        # A second `revisionHistoryLimit` in the Deployment's spec: a plain YAML
        # parser keeps the last one without a word.
        self.assertIn("  revisionHistoryLimit: 5\n", text)
        text = text.replace("  revisionHistoryLimit: 5\n",
                            "  revisionHistoryLimit: 5\n  revisionHistoryLimit: 50\n", 1)
        with open(path, "w") as f:
            f.write(text)
        with self.assertRaisesRegex(render.RenderError, r"duplicate key 'revisionHistoryLimit'"):
            render.render(os.path.join(d, "overlays", "sqlite"))
        out = subprocess.run(["yamllint", "-s", "-c", os.path.join(d, ".yamllint"), path],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn('duplication of key "revisionHistoryLimit"', out.stdout.decode())
        print("    rejected as expected: a duplicate key (renderer and yamllint)")

    def test_unknown_kind_or_version(self):
        objects = self.objects("sqlite")
        find(objects, "PodDisruptionBudget", "imap-gateway")["apiVersion"] = "policy/v1beta1"
        self.assert_rejected(objects, r"apiVersion 'policy/v1beta1' kind 'PodDisruptionBudget'")

    def test_enum_value(self):
        objects = self.objects("sqlite")
        find(objects, "Service", "imap-gateway")["spec"]["externalTrafficPolicy"] = "local"
        self.assert_rejected(objects, r"'local' is not one of \['Cluster', 'Local'\]")

    def test_missing_secret_and_key(self):
        objects = self.objects("sqlite")
        spec = self.gateway(objects)["spec"]["template"]["spec"]
        next(v for v in spec["volumes"] if v["name"] == "link")["secret"][
            "secretName"] = "mailbox-link-gatway"
        self.assert_rejected(objects, r"Secret 'mailbox-link-gatway' is not defined")
        objects = self.objects("postgres")
        env = env_of(container(find(objects, "Deployment", "mailbox-service"),
                               "mailbox-service"))
        env["MAILBOX_POSTGRES"]["valueFrom"]["secretKeyRef"]["key"] = "url"
        self.assert_rejected(objects, r"Secret mailbox-postgres has no key 'url'")

    def test_probe_and_port_names(self):
        objects = self.objects("sqlite")
        c = container(self.gateway(objects), "imap-gateway")
        c["readinessProbe"]["httpGet"]["port"] = "htpp"
        self.assert_rejected(objects, r"readinessProbe port 'htpp' is not a named container port")
        objects = self.objects("sqlite")
        find(objects, "Service", "imap-gateway")["spec"]["ports"][0]["targetPort"] = 993
        self.assert_rejected(objects, r"targetPort 993 is not a port of Deployment/imap-gateway")
        objects = self.objects("sqlite")
        find(objects, "NetworkPolicy", "mailbox-service")["spec"]["ingress"][0]["ports"][0][
            "port"] = 50052
        self.assert_rejected(objects, r"port 50052 is not a port of StatefulSet/mailbox-service")

    def test_selectors_must_select(self):
        objects = self.objects("sqlite")
        find(objects, "Service", "mailbox-service")["spec"]["selector"] = {
            "app.kubernetes.io/name": "mailbox"}
        self.assert_rejected(objects, r"Service/mailbox-service: its selector matches no pod")
        objects = self.objects("sqlite")
        find(objects, "PodDisruptionBudget", "imap-gateway")["spec"]["selector"][
            "matchLabels"] = {"app": "imap-gateway"}
        self.assert_rejected(objects, r"PodDisruptionBudget/imap-gateway: its selector matches")
        objects = self.objects("sqlite")
        find(objects, "HorizontalPodAutoscaler", "imap-gateway")["spec"]["scaleTargetRef"][
            "name"] = "gateway"
        self.assert_rejected(objects, r"scaleTargetRef Deployment/gateway not found")
        objects = self.objects("sqlite")
        self.gateway(objects)["spec"]["replicas"] = 2
        self.assert_rejected(objects, r"Deployment/imap-gateway sets replicas")
        objects = self.objects("sqlite")
        find(objects, "ServiceMonitor", "mailbox-service")["spec"]["endpoints"][0][
            "port"] = "metrics"
        self.assert_rejected(objects, r"port 'metrics' is not a port of Service/mailbox-service")

    def test_termination_grace_covers_the_drain(self):
        objects = self.objects("sqlite")
        self.gateway(objects)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30
        self.assert_rejected(objects, r"terminationGracePeriodSeconds 30 < 35s of drain")
        objects = self.objects("sqlite")
        env = env_of(container(self.gateway(objects), "imap-gateway"))
        env["IMAPD_DRAIN_TIMEOUT"]["value"] = "2m"
        self.assert_rejected(objects, r"terminationGracePeriodSeconds 45 < 125s of drain")
        objects = self.objects("sqlite")
        env = env_of(container(find(objects, "StatefulSet", "mailbox-service"),
                               "mailbox-service"))
        env["MAILBOX_DRAIN_TIMEOUT"]["value"] = "20"
        self.assert_rejected(objects, r"MAILBOX_DRAIN_TIMEOUT='20' is not a duration")

    def test_project_rules(self):
        objects = self.objects("sqlite")
        del self.gateway(objects)["spec"]["template"]["spec"]["enableServiceLinks"]
        self.assert_rejected(objects, r"enableServiceLinks must be false")
        objects = self.objects("sqlite")
        c = container(find(objects, "StatefulSet", "mailbox-service"), "mailbox-service")
        c["securityContext"]["readOnlyRootFilesystem"] = False
        self.assert_rejected(objects, r"container mailbox-service: readOnlyRootFilesystem")
        objects = self.objects("sqlite")
        del container(self.gateway(objects), "imap-gateway")["lifecycle"]
        self.assert_rejected(objects, r"preStop hook must be exec")
        objects = self.objects("sqlite")
        container(self.gateway(objects), "imap-gateway")["env"].append(
            {"name": "IMAPD_WORKERS", "value": "8"})
        self.assert_rejected(objects, r"env IMAPD_WORKERS is set twice")
        objects = self.objects("postgres")
        container(find(objects, "Deployment", "mailbox-service"), "mailbox-service")[
            "image"] = "localhost/imapd-mailbox-service"
        self.assert_rejected(objects, r"image 'localhost/imapd-mailbox-service' needs a version")

    def test_unknown_setting(self):
        if Fixture.env_names is None:
            Fixture.env_names = known_env()
        objects = self.objects("sqlite")
        container(self.gateway(objects), "imap-gateway")["env"].append(
            {"name": "IMAPD_DRAIN_TIMOUT", "value": "30s"})
        errors = check.check_all(objects, external_secrets={"alice-password"},
                                 known_env=self.env_names)
        self.assertRegex("\n".join(errors), r"IMAPD_DRAIN_TIMOUT is no setting of the "
                         r"binaries \(did you mean IMAPD_DRAIN_TIMEOUT\?\)")
        print(f"    rejected as expected: {errors[0]}")


if __name__ == "__main__":
    unittest.main()
