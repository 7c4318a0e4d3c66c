#!/usr/bin/env python3
"""CPU flame graphs from `perf record -g` data, one per process role, as self-contained
SVG (no scripts: each box carries a <title> tooltip with its share of the samples).

    fold(perf_data, roles)  -> {role: {"frame;frame;...": samples}}
    render_svg(stacks, title) -> "<svg ...>"

Roles map a role name ("gateway", "service", "dovecot", "loadgen") to the process ids
that belong to it; samples of other processes are dropped. Stacks are written root
first. A frame is its symbol where perf resolved one, else the shared object's base
name in brackets (stripped Debian libraries show as "[libgrpc.so.29.0.0]").

Also usable from the command line on an existing perf.data:
    flamegraph.py perf.data OUT_DIR role=pid[,pid...] ...
"""

import collections
import hashlib
import html
import os
import subprocess
import sys

WIDTH = 1180
ROW = 16
MIN_FRACTION = 0.002  # boxes narrower than this share of the samples are left out
MAX_DEPTH = 80


def _frame_name(sym, dso):
    sym = sym.strip()
    if sym and sym != "[unknown]":
        # Drop argument lists and templates' long tails so boxes stay readable.
        cut = sym.find("(")
        return sym[:cut] if cut > 0 else sym
    name = os.path.basename(dso.strip("()")) if dso else ""
    return "[%s]" % name if name and name != "[unknown]" else "[unknown]"


def parse_perf_script(text, pid_roles):
    """Folds `perf script -F pid,ip,sym,dso` output into per-role stack counts."""
    stacks = collections.defaultdict(collections.Counter)
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        head = lines[0].split()
        if not head or not head[0].isdigit():
            continue
        role = pid_roles.get(int(head[0]))
        if role is None:
            continue
        frames = []
        for line in lines[1:]:
            parts = line.strip().split(None, 1)
            if len(parts) < 2:
                continue
            rest = parts[1]
            dso = ""
            if rest.endswith(")") and " (" in rest:
                rest, dso = rest.rsplit(" (", 1)
            frames.append(_frame_name(rest, dso))
        if frames:
            stacks[role][";".join(reversed(frames[:MAX_DEPTH]))] += 1
    return {role: dict(counter) for role, counter in stacks.items()}


def fold(perf_data, roles):
    pid_roles = {pid: role for role, pids in roles.items() for pid in pids}
    script = subprocess.run(["perf", "script", "-i", perf_data, "-F", "pid,ip,sym,dso"],
                            capture_output=True, text=True, errors="replace", check=True)
    return parse_perf_script(script.stdout, pid_roles)


class _Node:
    __slots__ = ("name", "count", "children")

    def __init__(self, name):
        self.name = name
        self.count = 0
        self.children = {}


def _tree(stacks):
    root = _Node("all")
    for stack, count in stacks.items():
        root.count += count
        node = root
        for frame in stack.split(";"):
            node = node.children.setdefault(frame, _Node(frame))
            node.count += count
    return root


def _colour(name):
    digest = hashlib.md5(name.encode()).digest()
    if name.startswith("[k") or "kernel" in name:
        return "rgb(%d,%d,%d)" % (200 + digest[0] % 40, 120 + digest[1] % 50, 60)
    return "rgb(%d,%d,%d)" % (220 + digest[0] % 35, 90 + digest[1] % 120, 40 + digest[2] % 40)


def render_svg(stacks, title):
    """A flame graph (root at the bottom) of one role's folded stacks."""
    root = _tree(stacks)
    total = root.count
    boxes = []  # (depth, x fraction, width fraction, node)

    def walk(node, depth, x):
        boxes.append((depth, x, node.count / total, node))
        offset = x
        for child in sorted(node.children.values(), key=lambda n: n.name):
            fraction = child.count / total
            if fraction >= MIN_FRACTION:
                walk(child, depth + 1, offset)
            offset += fraction

    if total:
        walk(root, 0, 0.0)
    depth = max((b[0] for b in boxes), default=0) + 1
    height = depth * ROW + 34
    out = ['<svg xmlns="http://www.w3.org/2000/svg" class="flame" width="%d" height="%d" '
           'viewBox="0 0 %d %d" font-family="monospace" font-size="11">'
           % (WIDTH, height, WIDTH, height),
           '<text x="4" y="14" font-size="13">%s (%d samples)</text>'
           % (html.escape(title), total)]
    for level, x, width, node in boxes:
        px, pw = x * WIDTH, width * WIDTH
        py = height - (level + 1) * ROW - 4
        label = "%s (%d samples, %.2f%%)" % (node.name, node.count, 100.0 * width)
        out.append('<g><title>%s</title><rect x="%.1f" y="%d" width="%.1f" height="%d" '
                   'fill="%s" stroke="white" stroke-width="0.5"/>'
                   % (html.escape(label), px, py, max(pw, 0.5), ROW - 1, _colour(node.name)))
        chars = int((pw - 4) / 6.6)
        if chars >= 3:
            text = node.name if len(node.name) <= chars else node.name[:chars - 2] + ".."
            out.append('<text x="%.1f" y="%d">%s</text>' % (px + 2, py + 11, html.escape(text)))
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


def top_frames(stacks, limit=12):
    """The frames with the most samples of their own (leaf frames), with shares."""
    own = collections.Counter()
    for stack, count in stacks.items():
        own[stack.rsplit(";", 1)[-1]] += count
    total = sum(own.values()) or 1
    return [[name, round(100.0 * count / total, 2)] for name, count in own.most_common(limit)]


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    perf_data, out_dir = argv[0], argv[1]
    roles = {}
    for spec in argv[2:]:
        role, pids = spec.split("=", 1)
        roles[role] = [int(p) for p in pids.split(",") if p]
    os.makedirs(out_dir, exist_ok=True)
    for role, stacks in fold(perf_data, roles).items():
        path = os.path.join(out_dir, "flame-%s.svg" % role)
        with open(path, "w") as f:
            f.write(render_svg(stacks, role))
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
