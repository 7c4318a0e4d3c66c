#!/usr/bin/env python3
"""Renders a kustomization directory the way `kustomize build` does, for the subset of
kustomize these manifests use, so they can be rendered and checked where no kustomize
is installed (Debian 12 has none newer than kubectl 1.20's).

Supported, and nothing else (anything else in a kustomization is refused, so the
manifests cannot drift out of what is tested):
  * resources: YAML files (several documents each) and directories holding a
    kustomization;
  * components: directories holding a `kind: Component` kustomization, applied to
    the resources gathered so far;
  * namespace: set on every object;
  * patches: `path:` or `patch:` strategic merge patches, the target named by the
    patch's own apiVersion, kind and metadata.name; lists merge on the keys
    Kubernetes declares for them (containers and env by name, ports by containerPort
    or port, volumeMounts by mountPath, ...), items only the patch has going first
    as kustomize puts them; other lists are replaced; a null removes a field;
  * images: name, newName, newTag, digest;
  * secretGenerator and configMapGenerator from `files` (`key=path` or `path`) and
    `literals`, with generatorOptions.labels and disableNameSuffixHash: true (name
    hashes are not implemented).

Usage: render.py DIR  (prints the objects as a YAML stream)
"""
import copy
import os
import sys

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KUSTOMIZATION_KEYS = {
    "apiVersion", "kind", "resources", "components", "namespace", "patches", "images",
    "secretGenerator", "configMapGenerator", "generatorOptions",
}
# Kinds that live outside namespaces (none of ours, but kustomize leaves them alone).
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
# Strategic merge keys of the lists these manifests patch (from the Kubernetes API's
# patchMergeKey declarations). A list not named here is replaced as a whole.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "topologySpreadConstraints": "topologyKey",
    "hostAliases": "ip",
}
POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}


class RenderError(Exception):
    pass


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping with the same key twice (PyYAML would keep
    the last one silently, and the API server's decoder refuses it)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise RenderError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                f"(first at line {seen[key] + 1}) in {key_node.start_mark.name}")
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_file(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    loader = StrictLoader(text)
    try:
        docs = []
        while loader.check_data():
            doc = loader.get_data()
            if doc is not None:
                docs.append(doc)
        return docs
    except yaml.YAMLError as e:
        raise RenderError(f"{path}: {e}") from e
    finally:
        loader.dispose()


def find_kustomization(directory):
    for name in KUSTOMIZATION_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise RenderError(f"{directory}: no kustomization.yaml")


def object_id(obj):
    meta = obj.get("metadata") or {}
    return (obj.get("apiVersion"), obj.get("kind"), meta.get("namespace"), meta.get("name"))


def describe(obj):
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}/{meta.get('name')}"


def _group(api_version):
    return api_version.split("/")[0] if "/" in (api_version or "") else ""


def strategic_merge(base, patch, field=None):
    """Applies a strategic merge patch (the subset described in the module doc)."""
    if isinstance(patch, dict) and isinstance(base, dict):
        if "$patch" in patch:
            raise RenderError(f"$patch directives are not supported (at {field})")
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(patch, list) and isinstance(base, list):
        key = merge_key(field, base + patch)
        if key is None:
            return copy.deepcopy(patch)
        out = [copy.deepcopy(item) for item in base]
        new = []
        for item in patch:
            if not isinstance(item, dict) or key not in item:
                raise RenderError(f"an item of {field} in a patch has no {key}")
            for i, existing in enumerate(out):
                if isinstance(existing, dict) and existing.get(key) == item[key]:
                    out[i] = strategic_merge(existing, item, None)
                    break
            else:
                new.append(copy.deepcopy(item))
        # Items only the patch has go first, as kustomize puts them.
        return new + out
    return copy.deepcopy(patch)


def merge_key(field, items):
    if field in MERGE_KEYS:
        return MERGE_KEYS[field]
    if field == "ports":
        # Container ports merge on containerPort, Service ports on port.
        dicts = [i for i in items if isinstance(i, dict)]
        if dicts and all("containerPort" in i for i in dicts):
            return "containerPort"
        if dicts and all("port" in i for i in dicts):
            return "port"
    return None


def apply_patch(objects, patch, source):
    if not isinstance(patch, dict) or "kind" not in patch or "metadata" not in patch:
        raise RenderError(f"{source}: a patch needs apiVersion, kind and metadata.name")
    name = patch["metadata"].get("name")
    matches = [
        i for i, obj in enumerate(objects)
        if obj.get("kind") == patch["kind"]
        and (obj.get("metadata") or {}).get("name") == name
        and _group(obj.get("apiVersion")) == _group(patch.get("apiVersion"))
    ]
    if len(matches) != 1:
        raise RenderError(
            f"{source}: patch for {patch['kind']}/{name} matches {len(matches)} objects, "
            "not exactly one")
    i = matches[0]
    objects[i] = strategic_merge(objects[i], patch)


def _split_image(image):
    """(name, tag, digest) of an image reference."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    tag = None
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        image, tag = image[:colon], image[colon + 1:]
    return image, tag, digest


def pod_specs(obj):
    path = POD_TEMPLATE_PATHS.get(obj.get("kind"))
    if path is None:
        return []
    node = obj
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return []
    return [node]


def apply_images(objects, images, source):
    for entry in images:
        unknown = set(entry) - {"name", "newName", "newTag", "digest"}
        if unknown or "name" not in entry:
            raise RenderError(f"{source}: images entry {entry}: unsupported fields {unknown}")
        for obj in objects:
            for spec in pod_specs(obj):
                for group in ("initContainers", "containers"):
                    for container in spec.get(group) or []:
                        name, tag, digest = _split_image(container.get("image", ""))
                        if name != entry["name"]:
                            continue
                        name = entry.get("newName", name)
                        if "newTag" in entry:
                            tag, digest = str(entry["newTag"]), None
                        if "digest" in entry:
                            tag, digest = None, entry["digest"]
                        image = name
                        if tag:
                            image += ":" + tag
                        if digest:
                            image += "@" + digest
                        container["image"] = image


def generate(kind, entries, options, directory, source):
    import base64
    out = []
    hash_off = bool((options or {}).get("disableNameSuffixHash"))
    labels = (options or {}).get("labels") or {}
    unknown_options = set(options or {}) - {"disableNameSuffixHash", "labels"}
    if unknown_options:
        raise RenderError(f"{source}: generatorOptions {sorted(unknown_options)} not supported")
    for entry in entries:
        unknown = set(entry) - {"name", "files", "literals", "type"}
        if unknown:
            raise RenderError(f"{source}: {kind} generator fields {sorted(unknown)} not supported")
        if not hash_off:
            raise RenderError(
                f"{source}: generated names with a content hash are not supported here; "
                "set generatorOptions.disableNameSuffixHash: true")
        data = {}
        for spec in entry.get("files") or []:
            key, _, rel = spec.partition("=") if "=" in spec else (os.path.basename(spec), "", spec)
            path = os.path.normpath(os.path.join(directory, rel))
            if not os.path.isfile(path):
                raise RenderError(f"{source}: {entry['name']}: no file {path}")
            with open(path, "rb") as f:
                content = f.read()
            if key in data:
                raise RenderError(f"{source}: {entry['name']}: key {key} given twice")
            data[key] = content
        for spec in entry.get("literals") or []:
            key, sep, value = spec.partition("=")
            if not sep:
                raise RenderError(f"{source}: literal {spec!r} has no '='")
            data[key] = value.encode()
        obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": entry["name"]}}
        if labels:
            obj["metadata"]["labels"] = dict(labels)
        if kind == "Secret":
            obj["type"] = entry.get("type", "Opaque")
            obj["data"] = {k: base64.b64encode(v).decode() for k, v in sorted(data.items())}
        else:
            if "type" in entry:
                raise RenderError(f"{source}: a ConfigMap has no type")
            obj["data"] = {k: v.decode() for k, v in sorted(data.items())}
        out.append(obj)
    return out


def render(directory, expect_kind="Kustomization", _stack=()):
    directory = os.path.abspath(directory)
    if directory in _stack:
        raise RenderError(f"{directory}: cycle of kustomizations")
    path = find_kustomization(directory)
    docs = load_yaml_file(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise RenderError(f"{path}: one mapping expected")
    k = docs[0]
    unknown = set(k) - KUSTOMIZATION_KEYS
    if unknown:
        raise RenderError(f"{path}: fields {sorted(unknown)} are outside the subset this "
                          "renderer implements (tools/render.py)")
    kind = k.get("kind", "Kustomization")
    if kind != expect_kind:
        raise RenderError(f"{path}: kind {kind}, expected {expect_kind}")
    objects = []
    for res in k.get("resources") or []:
        target = os.path.normpath(os.path.join(directory, res))
        if os.path.isdir(target):
            objects.extend(render(target, "Kustomization", _stack + (directory,)))
        elif os.path.isfile(target):
            for doc in load_yaml_file(target):
                if not isinstance(doc, dict) or "kind" not in doc:
                    raise RenderError(f"{target}: a document without kind")
                objects.append(doc)
        else:
            raise RenderError(f"{path}: resource {res} not found")
    options = k.get("generatorOptions")
    objects.extend(generate("Secret", k.get("secretGenerator") or [], options, directory, path))
    objects.extend(generate("ConfigMap", k.get("configMapGenerator") or [], options, directory,
                            path))
    for comp in k.get("components") or []:
        objects = apply_component(os.path.normpath(os.path.join(directory, comp)), objects,
                                  _stack + (directory,))
    apply_transformers(k, objects, directory, path)
    seen = {}
    for obj in objects:
        oid = object_id(obj)
        if oid in seen:
            raise RenderError(f"{path}: {describe(obj)} twice")
        seen[oid] = True
    return objects


def apply_component(directory, objects, stack):
    path = find_kustomization(directory)
    k = load_yaml_file(path)[0]
    if k.get("kind") != "Component":
        raise RenderError(f"{path}: not a Component")
    unknown = set(k) - KUSTOMIZATION_KEYS
    if unknown:
        raise RenderError(f"{path}: fields {sorted(unknown)} are not supported")
    objects = list(objects)
    for res in k.get("resources") or []:
        target = os.path.normpath(os.path.join(directory, res))
        if os.path.isdir(target):
            objects.extend(render(target, "Kustomization", stack + (directory,)))
        else:
            objects.extend(load_yaml_file(target))
    options = k.get("generatorOptions")
    objects.extend(generate("Secret", k.get("secretGenerator") or [], options, directory, path))
    objects.extend(generate("ConfigMap", k.get("configMapGenerator") or [], options, directory,
                            path))
    for comp in k.get("components") or []:
        objects = apply_component(os.path.normpath(os.path.join(directory, comp)), objects,
                                  stack + (directory,))
    apply_transformers(k, objects, directory, path)
    return objects


def apply_transformers(k, objects, directory, path):
    for entry in k.get("patches") or []:
        unknown = set(entry) - {"path", "patch"}
        if unknown or len(entry) != 1:
            raise RenderError(f"{path}: patches entry {entry}: give exactly one of path or "
                              "patch (targets and JSON patches are not supported)")
        if "path" in entry:
            source = os.path.normpath(os.path.join(directory, entry["path"]))
            patches = load_yaml_file(source)
        else:
            source = f"{path} (inline patch)"
            patches = [d for d in yaml.load_all(entry["patch"], Loader=StrictLoader) if d]
        for patch in patches:
            apply_patch(objects, patch, source)
    apply_images(objects, k.get("images") or [], path)
    namespace = k.get("namespace")
    if namespace:
        for obj in objects:
            if obj.get("kind") not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = namespace


def dump(objects):
    return yaml.safe_dump_all(objects, sort_keys=True, default_flow_style=False)


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        objects = render(argv[1])
    except RenderError as e:
        print(f"render: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(dump(objects))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
