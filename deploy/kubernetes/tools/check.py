#!/usr/bin/env python3
"""Strict checks of rendered Kubernetes objects, with no cluster.

1. Schema: every object of a built-in kind is walked against the models of Debian's
   python3-kubernetes (each model's `openapi_types` and `attribute_map`): a field the
   API does not have (a misspelling), a value of the wrong type (a number where a
   string goes, a string for an integer, a bool for a string), and a missing required
   field (the models' setters refuse None for those) are errors, as are values
   outside the few enumerations listed in ENUMS. The models are those of Kubernetes
   1.22; autoscaling/v2 is checked against autoscaling/v2beta2's models, which have
   the same fields. ServiceMonitor (a CRD the models do not know) is checked against
   SERVICE_MONITOR below.
2. References: Secrets, ConfigMaps and their keys, volumes, named ports, probes,
   selectors of Services, workloads, PodDisruptionBudgets, HorizontalPodAutoscalers,
   NetworkPolicies and ServiceMonitors must point at what exists in the same set.
3. Rules of this project: non-root uid 10001, read-only root file system, no
   capabilities, seccomp RuntimeDefault, images with a version, no service links (the binaries refuse unknown
   IMAPD_*/MAILBOX_* variables), resources, and terminationGracePeriodSeconds at
   least the drain the environment asks for plus a margin.

Usage: check.py [--external-secret NAME]... FILE.yaml...  (rendered objects)
Exit status 1 and one line per problem when anything is wrong.
"""
import argparse
import difflib
import os
import re
import sys

import kubernetes.client as models

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import render  # noqa: E402  (the strict YAML loader)

# (apiVersion, kind) -> model class. Anything else is refused.
KINDS = {
    ("v1", "Service"): "V1Service",
    ("v1", "Secret"): "V1Secret",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("batch/v1", "Job"): "V1Job",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2beta2HorizontalPodAutoscaler",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
}
# Fields the API server fills in; a manifest has no business setting them.
SERVER_SET = {("V1ObjectMeta", "uid"), ("V1ObjectMeta", "resource_version"),
              ("V1ObjectMeta", "creation_timestamp"), ("V1ObjectMeta", "managed_fields"),
              ("V1ObjectMeta", "generation")}
ENUMS = {
    ("V1ServiceSpec", "type"): {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"},
    ("V1ServiceSpec", "external_traffic_policy"): {"Cluster", "Local"},
    ("V1ServicePort", "protocol"): {"TCP", "UDP", "SCTP"},
    ("V1ContainerPort", "protocol"): {"TCP", "UDP", "SCTP"},
    ("V1NetworkPolicyPort", "protocol"): {"TCP", "UDP", "SCTP"},
    ("V1Container", "image_pull_policy"): {"Always", "IfNotPresent", "Never"},
    ("V1PodSpec", "restart_policy"): {"Always", "OnFailure", "Never"},
    ("V1DeploymentStrategy", "type"): {"RollingUpdate", "Recreate"},
    ("V1StatefulSetUpdateStrategy", "type"): {"RollingUpdate", "OnDelete"},
    ("V1StatefulSetSpec", "pod_management_policy"): {"OrderedReady", "Parallel"},
    ("V1TopologySpreadConstraint", "when_unsatisfiable"): {"DoNotSchedule", "ScheduleAnyway"},
    ("V1PodSecurityContext", "fs_group_change_policy"): {"OnRootMismatch", "Always"},
    ("V1SeccompProfile", "type"): {"RuntimeDefault", "Localhost", "Unconfined"},
    ("V2beta2MetricSpec", "type"): {"Resource", "Pods", "Object", "External",
                                    "ContainerResource"},
    ("V2beta2MetricTarget", "type"): {"Utilization", "Value", "AverageValue"},
    ("V2beta2HPAScalingPolicy", "type"): {"Pods", "Percent"},
    ("V1Secret", "type"): {"Opaque", "kubernetes.io/tls", "kubernetes.io/basic-auth",
                           "kubernetes.io/ssh-auth", "kubernetes.io/dockerconfigjson"},
}
LIST_ENUMS = {
    ("V1NetworkPolicySpec", "policy_types"): {"Ingress", "Egress"},
    ("V1PersistentVolumeClaimSpec", "access_modes"): {"ReadWriteOnce", "ReadOnlyMany",
                                                      "ReadWriteMany", "ReadWriteOncePod"},
}

# The ServiceMonitor fields these manifests may use (monitoring.coreos.com/v1); a
# field outside them is refused like an unknown one. Same notation as the models:
# a dict {json name: type}, with required fields in "__required__".
SERVICE_MONITOR = {
    "__required__": {"apiVersion", "kind", "metadata", "spec"},
    "apiVersion": "str", "kind": "str", "metadata": "V1ObjectMeta",
    "spec": {
        "__required__": {"selector", "endpoints"},
        "jobLabel": "str",
        "selector": "V1LabelSelector",
        "namespaceSelector": {"any": "bool", "matchNames": "list[str]"},
        "sampleLimit": "int",
        "targetLabels": "list[str]",
        "podTargetLabels": "list[str]",
        "endpoints": ["list", {
            "port": "str",
            "targetPort": "object",
            "path": "str",
            "scheme": "str",
            "interval": "duration",
            "scrapeTimeout": "duration",
            "honorLabels": "bool",
            "honorTimestamps": "bool",
            "params": "dict(str, list[str])",
            "relabelings": "list[object]",
            "metricRelabelings": "list[object]",
        }],
    },
}
PROMETHEUS_DURATION = re.compile(r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
                                 r"(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$")

_required_cache = {}


def required_attrs(cls):
    """Attributes whose setter refuses None: the required fields."""
    if cls not in _required_cache:
        required = set()
        instance = cls.__new__(cls)
        instance.local_vars_configuration = models.Configuration()
        instance.local_vars_configuration.client_side_validation = True
        for attr in cls.openapi_types:
            try:
                getattr(cls, attr).fset(instance, None)
            except ValueError:
                required.add(attr)
        _required_cache[cls] = required
    return _required_cache[cls]


class Checker:
    def __init__(self):
        self.errors = []

    def error(self, where, message):
        self.errors.append(f"{where}: {message}")

    # -- schema ------------------------------------------------------------------

    def check_type(self, value, type_name, where, owner=None):
        if value is None:
            self.error(where, "null value (leave the field out instead)")
            return
        if isinstance(type_name, dict):
            self.check_schema(value, type_name, where)
            return
        if isinstance(type_name, list):  # ["list", schema]
            if not isinstance(value, list):
                self.error(where, f"expected a list, got {type(value).__name__}")
                return
            for i, item in enumerate(value):
                self.check_type(item, type_name[1], f"{where}[{i}]")
            return
        if type_name.startswith("list["):
            if not isinstance(value, list):
                self.error(where, f"expected a list, got {type(value).__name__} {value!r}")
                return
            for i, item in enumerate(value):
                self.check_type(item, type_name[5:-1], f"{where}[{i}]")
            return
        if type_name.startswith("dict("):
            if not isinstance(value, dict):
                self.error(where, f"expected a mapping, got {type(value).__name__}")
                return
            inner = type_name[type_name.index(",") + 1:-1].strip()
            for key, item in value.items():
                if not isinstance(key, str):
                    self.error(where, f"key {key!r} is not a string")
                self.check_type(item, inner, f"{where}.{key}")
            return
        if type_name == "str" or type_name == "datetime":
            if not isinstance(value, str):
                self.error(where, f"expected a string, got {type(value).__name__} {value!r} "
                           "(quote it)")
            return
        if type_name == "duration":
            if not isinstance(value, str) or not value or not PROMETHEUS_DURATION.match(value):
                self.error(where, f"expected a duration such as 30s, got {value!r}")
            return
        if type_name == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                self.error(where, f"expected an integer, got {type(value).__name__} {value!r}")
            return
        if type_name == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.error(where, f"expected a number, got {type(value).__name__} {value!r}")
            return
        if type_name == "bool":
            if not isinstance(value, bool):
                self.error(where, f"expected true or false, got {type(value).__name__} "
                           f"{value!r}")
            return
        if type_name == "object":
            # int-or-string fields (ports, maxUnavailable) and free-form ones.
            if isinstance(value, bool) or value is None:
                self.error(where, f"unexpected {value!r}")
            return
        cls = getattr(models, type_name, None)
        if cls is None:
            self.error(where, f"no model {type_name}")
            return
        self.check_model(value, cls, where)

    def check_model(self, value, cls, where):
        if not isinstance(value, dict):
            self.error(where, f"expected a mapping ({cls.__name__}), got "
                       f"{type(value).__name__} {value!r}")
            return
        by_json = {json: attr for attr, json in cls.attribute_map.items()}
        for key, item in value.items():
            attr = by_json.get(key)
            if attr is None:
                close = difflib.get_close_matches(str(key), list(by_json), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.error(where, f"unknown field {key!r} in {cls.__name__}{hint}")
                continue
            if (cls.__name__, attr) in SERVER_SET:
                self.error(f"{where}.{key}", "set by the API server, not by a manifest")
            self.check_type(item, cls.openapi_types[attr], f"{where}.{key}")
            allowed = ENUMS.get((cls.__name__, attr))
            if allowed is not None and isinstance(item, str) and item not in allowed:
                self.error(f"{where}.{key}", f"{item!r} is not one of {sorted(allowed)}")
            allowed = LIST_ENUMS.get((cls.__name__, attr))
            if allowed is not None and isinstance(item, list):
                for entry in item:
                    if entry not in allowed:
                        self.error(f"{where}.{key}", f"{entry!r} is not one of {sorted(allowed)}")
        for attr in sorted(required_attrs(cls)):
            json = cls.attribute_map[attr]
            if json not in value:
                self.error(where, f"missing required field {json!r} of {cls.__name__}")

    def check_schema(self, value, schema, where):
        if not isinstance(value, dict):
            self.error(where, f"expected a mapping, got {type(value).__name__}")
            return
        for key, item in value.items():
            if key == "__required__" or key not in schema:
                close = difflib.get_close_matches(str(key), [k for k in schema
                                                             if k != "__required__"], n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.error(where, f"unknown field {key!r}{hint}")
                continue
            self.check_type(item, schema[key], f"{where}.{key}")
        for key in sorted(schema.get("__required__", ())):
            if key not in value:
                self.error(where, f"missing required field {key!r}")

    def check_object(self, obj, where):
        if not isinstance(obj, dict):
            self.error(where, "not a mapping")
            return False
        api, kind = obj.get("apiVersion"), obj.get("kind")
        name = (obj.get("metadata") or {}).get("name") or (obj.get("metadata") or {}).get(
            "generateName")
        where = f"{where} {kind}/{name}"
        if (api, kind) == ("monitoring.coreos.com/v1", "ServiceMonitor"):
            self.check_schema(obj, SERVICE_MONITOR, where)
            return True
        model = KINDS.get((api, kind))
        if model is None:
            self.error(where, f"apiVersion {api!r} kind {kind!r} is not one this checker knows")
            return False
        self.check_model(obj, getattr(models, model), where)
        if not name:
            self.error(where, "no metadata.name")
        return True


# -- references and rules ---------------------------------------------------------

POD_SPEC_PATHS = render.POD_TEMPLATE_PATHS
DURATION = re.compile(r"^([0-9]+)(ms|s|m|h)$")
MARGIN_SECONDS = 5
# What the binaries wait for at shutdown when the variable is not set.
DRAIN_DEFAULTS = {"IMAPD_SHUTDOWN_GRACE": 5, "IMAPD_DRAIN_TIMEOUT": 30,
                  "MAILBOX_DRAIN_TIMEOUT": 20}


def seconds(text):
    m = DURATION.match(text or "")
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return {"ms": n / 1000, "s": n, "m": 60 * n, "h": 3600 * n}[unit]


def pod_template(obj):
    path = POD_SPEC_PATHS.get(obj.get("kind"))
    if not path:
        return None, None
    node = obj
    for key in path[:-1]:
        node = (node or {}).get(key)
    if node is None:
        return None, None
    labels = ((node.get("metadata") or {}).get("labels") or {}) if path[-1] == "spec" else {}
    return node.get("spec"), labels


def selects(selector, labels):
    """True when a label selector (matchLabels / matchExpressions) matches labels."""
    if selector is None:
        return False
    match = selector.get("matchLabels", selector if "matchExpressions" not in selector
                         and "matchLabels" not in selector else {}) or {}
    for key, value in match.items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        value = labels.get(expr.get("key"))
        op = expr.get("operator")
        values = expr.get("values") or []
        if op == "In" and value not in values:
            return False
        if op == "NotIn" and value in values:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return True


def check_references(objects, checker, external_secrets=()):
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj.get("kind"), {})[(obj.get("metadata") or {}).get("name")] = obj
    secrets = by_kind.get("Secret", {})
    configmaps = by_kind.get("ConfigMap", {})
    pods = []  # (where, owner, spec, labels)
    for obj in objects:
        spec, labels = pod_template(obj)
        if spec is not None:
            pods.append((f"{obj['kind']}/{obj['metadata'].get('name') or obj['metadata'].get('generateName')}",
                         obj, spec, labels))

    def secret_keys(name, where):
        if name in external_secrets:
            return None
        if name not in secrets:
            checker.error(where, f"Secret {name!r} is not defined")
            return set()
        return set((secrets[name].get("data") or {})) | set(
            (secrets[name].get("stringData") or {}))

    def configmap_keys(name, where):
        if name not in configmaps:
            checker.error(where, f"ConfigMap {name!r} is not defined")
            return set()
        return set((configmaps[name].get("data") or {}))

    def pod_ports(spec):
        ports = {}
        for c in spec.get("containers") or []:
            for p in c.get("ports") or []:
                ports[p.get("name")] = p.get("containerPort")
        return ports

    for where, owner, spec, labels in pods:
        # The workload's own selector must match its template.
        selector = (owner.get("spec") or {}).get("selector")
        if owner["kind"] in ("Deployment", "StatefulSet") and not selects(selector, labels):
            checker.error(where, "spec.selector does not match the pod template's labels")
        for key, value in labels.items():
            if not isinstance(value, str):
                checker.error(where, f"label {key} is not a string")
        # Volumes and what they reference.
        volumes = {}
        for vol in spec.get("volumes") or []:
            volumes[vol.get("name")] = vol
            if "secret" in vol:
                keys = secret_keys(vol["secret"].get("secretName"), f"{where} volume {vol['name']}")
                for item in vol["secret"].get("items") or []:
                    if keys is not None and item.get("key") not in keys:
                        checker.error(where, f"volume {vol['name']}: Secret "
                                      f"{vol['secret'].get('secretName')} has no key {item.get('key')!r}")
            if "configMap" in vol:
                keys = configmap_keys(vol["configMap"].get("name"), f"{where} volume {vol['name']}")
                for item in vol["configMap"].get("items") or []:
                    if item.get("key") not in keys:
                        checker.error(where, f"volume {vol['name']}: ConfigMap has no key "
                                      f"{item.get('key')!r}")
        claim_templates = {(t.get("metadata") or {}).get("name")
                           for t in (owner.get("spec") or {}).get("volumeClaimTemplates") or []}
        used = set()
        ports = pod_ports(spec)
        for group in ("initContainers", "containers"):
            for c in spec.get(group) or []:
                cwhere = f"{where} container {c.get('name')}"
                for mount in c.get("volumeMounts") or []:
                    used.add(mount.get("name"))
                    if mount.get("name") not in volumes and mount.get("name") not in claim_templates:
                        checker.error(cwhere, f"volumeMount {mount.get('name')!r} names no volume")
                    vol = volumes.get(mount.get("name")) or {}
                    if "subPath" in mount and "secret" in vol:
                        items = vol["secret"].get("items")
                        paths = ({i.get("path") for i in items} if items else
                                 secret_keys(vol["secret"].get("secretName"), cwhere))
                        if paths is not None and mount["subPath"] not in paths:
                            checker.error(cwhere, f"subPath {mount['subPath']!r} is not in volume "
                                          f"{mount['name']}")
                for env in c.get("env") or []:
                    ref = (env.get("valueFrom") or {})
                    if "secretKeyRef" in ref and not ref["secretKeyRef"].get("optional"):
                        keys = secret_keys(ref["secretKeyRef"].get("name"), cwhere)
                        if keys is not None and ref["secretKeyRef"].get("key") not in keys:
                            checker.error(cwhere, f"env {env.get('name')}: Secret "
                                          f"{ref['secretKeyRef'].get('name')} has no key "
                                          f"{ref['secretKeyRef'].get('key')!r}")
                    if "configMapKeyRef" in ref and not ref["configMapKeyRef"].get("optional"):
                        keys = configmap_keys(ref["configMapKeyRef"].get("name"), cwhere)
                        if ref["configMapKeyRef"].get("key") not in keys:
                            checker.error(cwhere, f"env {env.get('name')}: ConfigMap has no key "
                                          f"{ref['configMapKeyRef'].get('key')!r}")
                for source in c.get("envFrom") or []:
                    if "secretRef" in source:
                        secret_keys(source["secretRef"].get("name"), cwhere)
                    if "configMapRef" in source:
                        configmap_keys(source["configMapRef"].get("name"), cwhere)
                for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
                    probe = c.get(probe_name)
                    if not probe:
                        continue
                    for handler in ("httpGet", "tcpSocket", "grpc"):
                        port = (probe.get(handler) or {}).get("port")
                        if port is None:
                            continue
                        if isinstance(port, str) and port not in ports:
                            checker.error(cwhere, f"{probe_name} port {port!r} is not a named "
                                          "container port")
                        if isinstance(port, int) and port not in ports.values():
                            checker.error(cwhere, f"{probe_name} port {port} is not a container "
                                          "port")
        for name in volumes:
            if name not in used:
                checker.error(where, f"volume {name!r} is mounted by no container")
        check_pod_rules(where, owner, spec, checker)

    def pods_selected(selector, namespace_selector=None):
        return [(w, o, s, l) for (w, o, s, l) in pods if selects(selector, l)]

    for name, svc in by_kind.get("Service", {}).items():
        where = f"Service/{name}"
        selector = (svc.get("spec") or {}).get("selector")
        matched = pods_selected({"matchLabels": selector}) if selector else []
        if not matched:
            checker.error(where, "its selector matches no pod template")
        for port in (svc.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for w, _, spec, _ in matched:
                p = pod_ports(spec)
                if (isinstance(target, str) and target not in p) or (
                        isinstance(target, int) and target not in p.values()):
                    checker.error(where, f"port {port.get('name')}: targetPort {target!r} is not "
                                  f"a port of {w}")
    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        if not pods_selected((pdb.get("spec") or {}).get("selector")):
            checker.error(f"PodDisruptionBudget/{name}", "its selector matches no pod template")
    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        target = by_kind.get(ref.get("kind"), {}).get(ref.get("name"))
        where = f"HorizontalPodAutoscaler/{name}"
        if target is None:
            checker.error(where, f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} not found")
            continue
        if "replicas" in (target.get("spec") or {}):
            checker.error(where, f"{ref.get('kind')}/{ref.get('name')} sets replicas, which "
                          "every apply would reset under the autoscaler: leave it out")
        spec, _ = pod_template(target)
        for metric in (hpa.get("spec") or {}).get("metrics") or []:
            resource = (metric.get("resource") or {}).get("name")
            if resource and any(((c.get("resources") or {}).get("requests") or {}).get(resource)
                                is None for c in spec.get("containers") or []):
                checker.error(where, f"scales on {resource} but a container requests none")
    for name, policy in by_kind.get("NetworkPolicy", {}).items():
        where = f"NetworkPolicy/{name}"
        selected = pods_selected((policy.get("spec") or {}).get("podSelector"))
        if not selected:
            checker.error(where, "its podSelector matches no pod template")
        for rule in (policy.get("spec") or {}).get("ingress") or []:
            for peer in rule.get("from") or []:
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    if not pods_selected(peer["podSelector"]):
                        checker.error(where, f"from.podSelector {peer['podSelector']} matches "
                                      "no pod template")
            for port in rule.get("ports") or []:
                value = port.get("port")
                for w, _, spec, _ in selected:
                    p = pod_ports(spec)
                    if (isinstance(value, str) and value not in p) or (
                            isinstance(value, int) and value not in p.values()):
                        checker.error(where, f"port {value!r} is not a port of {w}")
    for name, monitor in by_kind.get("ServiceMonitor", {}).items():
        where = f"ServiceMonitor/{name}"
        spec = monitor.get("spec") or {}
        services = [s for s in by_kind.get("Service", {}).values()
                    if selects(spec.get("selector"), (s.get("metadata") or {}).get("labels") or {})]
        if not services:
            checker.error(where, "its selector matches no Service")
        for endpoint in spec.get("endpoints") or []:
            for svc in services:
                names = {p.get("name") for p in (svc.get("spec") or {}).get("ports") or []}
                if endpoint.get("port") not in names:
                    checker.error(where, f"port {endpoint.get('port')!r} is not a port of "
                                  f"Service/{svc['metadata']['name']}")


def check_pod_rules(where, owner, spec, checker):
    if spec.get("enableServiceLinks") is not False:
        checker.error(where, "enableServiceLinks must be false: the binaries refuse unknown "
                      "IMAPD_*/MAILBOX_* variables, and service links add such variables")
    psc = spec.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") != 10001:
        checker.error(where, "securityContext must set runAsNonRoot: true and runAsUser: 10001")
    if ((psc.get("seccompProfile") or {}).get("type")) != "RuntimeDefault":
        checker.error(where, "securityContext.seccompProfile.type must be RuntimeDefault")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            cwhere = f"{where} container {c.get('name')}"
            sc = c.get("securityContext") or {}
            if sc.get("readOnlyRootFilesystem") is not True:
                checker.error(cwhere, "readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                checker.error(cwhere, "allowPrivilegeEscalation must be false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                checker.error(cwhere, "capabilities.drop must contain ALL")
            if sc.get("runAsUser", psc.get("runAsUser")) != 10001:
                checker.error(cwhere, "must run as uid 10001")
            _, tag, digest = render._split_image(c.get("image", ""))
            if not digest and (not tag or tag == "latest"):
                checker.error(cwhere, f"image {c.get('image')!r} needs a version tag or a digest "
                              "(none, or latest, is whatever the registry has today)")
            res = c.get("resources") or {}
            if not (res.get("requests") or {}).get("cpu") or not (
                    res.get("requests") or {}).get("memory") or not (
                    res.get("limits") or {}).get("memory"):
                checker.error(cwhere, "needs cpu and memory requests and a memory limit")
            names = [e.get("name") for e in c.get("env") or []]
            for name in sorted({n for n in names if names.count(n) > 1}):
                checker.error(cwhere, f"env {name} is set twice (the last one would win)")
            env = {e.get("name"): e.get("value") for e in c.get("env") or []}
            for name, value in env.items():
                if name in DRAIN_DEFAULTS and value is not None and seconds(value) is None:
                    checker.error(cwhere, f"{name}={value!r} is not a duration such as 30s")
            needed = None
            if c.get("name") == "imap-gateway":
                needed = (seconds(env.get("IMAPD_SHUTDOWN_GRACE")) or DRAIN_DEFAULTS[
                    "IMAPD_SHUTDOWN_GRACE"]) + (seconds(env.get("IMAPD_DRAIN_TIMEOUT")) or
                                                DRAIN_DEFAULTS["IMAPD_DRAIN_TIMEOUT"])
                stop = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get(
                    "command")
                if stop != ["/usr/bin/imap-gateway", "drain"]:
                    checker.error(cwhere, "the preStop hook must be exec "
                                  "[/usr/bin/imap-gateway, drain]")
                for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                    if ((c.get(probe) or {}).get("httpGet") or {}).get("path") != path:
                        checker.error(cwhere, f"{probe} must GET {path}")
            elif c.get("name") == "mailbox-service":
                needed = seconds(env.get("MAILBOX_DRAIN_TIMEOUT")) or DRAIN_DEFAULTS[
                    "MAILBOX_DRAIN_TIMEOUT"]
                for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                    if ((c.get(probe) or {}).get("httpGet") or {}).get("path") != path:
                        checker.error(cwhere, f"{probe} must GET {path}")
            if needed is not None and grace < needed + MARGIN_SECONDS:
                checker.error(cwhere, f"terminationGracePeriodSeconds {grace} < {needed:g}s of "
                              f"drain the environment asks for + {MARGIN_SECONDS}s margin")


def check_env_names(objects, known, checker):
    """IMAPD_*/MAILBOX_* variables must be settings the binaries have."""
    for obj in objects:
        spec, _ = pod_template(obj)
        if spec is None:
            continue
        for group in ("initContainers", "containers"):
            for c in spec.get(group) or []:
                for env in c.get("env") or []:
                    name = env.get("name", "")
                    if name.startswith(("IMAPD_", "MAILBOX_")) and name not in known:
                        close = difflib.get_close_matches(name, sorted(known), n=1)
                        hint = f" (did you mean {close[0]}?)" if close else ""
                        checker.error(f"{obj['kind']}/{obj['metadata'].get('name')} container "
                                      f"{c.get('name')}",
                                      f"{name} is no setting of the binaries{hint}")


def check_all(objects, external_secrets=(), known_env=None):
    checker = Checker()
    good = [o for i, o in enumerate(objects) if checker.check_object(o, f"#{i}")]
    if not checker.errors:
        check_references(good, checker, external_secrets)
        if known_env is not None:
            check_env_names(good, known_env, checker)
    return checker.errors


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--external-secret", action="append", default=[],
                        help="a Secret made outside these manifests (not checked)")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv[1:])
    objects = []
    try:
        for path in args.files:
            objects.extend(render.load_yaml_file(path))
    except render.RenderError as e:
        print(f"check: {e}", file=sys.stderr)
        return 1
    errors = check_all(objects, set(args.external_secret))
    for line in errors:
        print(f"check: {line}", file=sys.stderr)
    print(f"check: {len(objects)} objects, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
