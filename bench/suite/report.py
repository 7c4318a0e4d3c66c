#!/usr/bin/env python3
"""Renders the bench suite's results.json (written by run_suite.py) as one self-contained
HTML page for a capacity planner: inline CSS and SVG, no scripts, nothing fetched.

Usage: python3 bench/suite/report.py RESULTS.json OUT.html

Any section, system or run may be missing or carry {"error": "..."}; the page then says
"not run" or shows the error instead of the figure.
"""

import html
import json
import math
import os
import sys
from dataclasses import dataclass, field

# "imapd-baseline": our system from an earlier build's binaries (run_suite.py
# --baseline-bin), shown beside the current one.
SYSTEM_NAMES = {"imapd": "imapd", "imapd-baseline": "imapd (baseline build)",
                "dovecot": "Dovecot", "imapd-pg1": "imapd on PostgreSQL, 1 replica",
                "imapd-pg2": "imapd on PostgreSQL, 2 replicas",
                "imapd-pg3": "imapd on PostgreSQL, 3 replicas"}
SYSTEM_COLOURS = {"imapd": "#0072B2", "imapd-baseline": "#56B4E9", "dovecot": "#D55E00",
                  "imapd-pg1": "#009E73", "imapd-pg2": "#CC79A7", "imapd-pg3": "#E69F00"}
# Okabe-Ito colours (readable for colour-blind readers), for lines told apart by client count.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#555555"]
PROFILE_ORDER = ["imaptest-persistent", "imaptest-default", "desktop", "webmail", "webmail-sort",
                 "mobile", "ingest"]
TRANSPORT_NAMES = {"tls": "IMAPS", "plain": "plain IMAP"}
# Profiles with no think time: their command rate is whatever the load generator drives,
# not what a user does, so capacity is given per core rather than per user. (summary.json
# does not say the think time; bench/loadgen/profiles/*.profile does.)
UNPACED_PROFILES = {"imaptest-persistent", "imaptest-default", "ingest"}
TARGET_UTILISATION = 0.70
DEFAULT_USERS = (10_000, 100_000, 1_000_000)
# A ratio this close to 1 is reported as "about even" rather than a win.
EVEN_MARGIN = 0.05


# ---- Reading the results --------------------------------------------------------------


def dig(data, *keys):
    """data[k1][k2]..., or None where a level is missing or not a dict."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def system_list(results):
    """Systems in the order meta lists them, then any others present in the results."""
    listed = list(dig(results, "meta", "systems") or [])
    return listed + [s for s in (results.get("systems") or {}) if s not in listed]


def section(results, system, name):
    """(data, error) of one system's section: data is None when the section is missing or
    failed; error is the failure text of the section or of the whole system."""
    error = dig(results, "systems", system, "error")
    if error is not None:
        return None, str(error)
    data = dig(results, "systems", system, name)
    if isinstance(data, dict) and "error" in data:
        return None, str(data["error"])
    return data, None


def profile_runs(results, system):
    runs, _ = section(results, system, "profiles")
    return [r for r in runs or [] if isinstance(r, dict)]


def transport_of(run):
    return run.get("transport", "tls")


def find_run(results, system, profile, clients, transport="tls"):
    """The run of `profile` at `clients` over `transport`, or None."""
    for run in profile_runs(results, system):
        if (run.get("profile") == profile and run.get("clients") == clients
                and transport_of(run) == transport):
            return run
    return None


def server_cpu_ms(run):
    """CPU ms per 1,000 commands of the server (gateway + service, or every Dovecot
    process), or None."""
    value = dig(run or {}, "cpu_s_per_1000_commands", "total")
    return value * 1000 if is_number(value) else None


def loadgen_share(run):
    """The load generator's share of all CPU the run used (server + load generator)."""
    cpu = (run or {}).get("cpu_s") or {}
    server, loadgen = cpu.get("total"), cpu.get("loadgen")
    if not (is_number(server) and is_number(loadgen)) or server + loadgen <= 0:
        return None
    return loadgen / (server + loadgen)


def profile_names(results):
    """Every profile any system ran, shipped profiles first."""
    seen = {r.get("profile") for s in system_list(results) for r in profile_runs(results, s)}
    seen.discard(None)
    return [p for p in PROFILE_ORDER if p in seen] + sorted(seen - set(PROFILE_ORDER))


def run_errors(run):
    """Total command errors of a profile run (a run that failed outright counts as one)."""
    if "error" in run:
        return 1
    total = dig(run, "summary", "errors", "total")
    return total if is_number(total) else 0


def idle_entries(results, system):
    entries, _ = section(results, system, "idle")
    return sorted((e for e in entries or [] if is_number(e.get("connections"))),
                  key=lambda e: e["connections"])


# ---- Formatting -----------------------------------------------------------------------


def esc(text):
    return html.escape(str(text), quote=True)


def fmt(value, digits=None):
    """A number for a table cell: thousands separators, fewer decimals for larger values.
    Non-numbers (status text such as "not run") pass through; None is a dash."""
    if value is None:
        return "—"
    if not is_number(value):
        return str(value)
    if digits is None:
        digits = 0 if isinstance(value, int) or abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def ms(us):
    return us / 1000 if is_number(us) else None


def mib(kib):
    return kib / 1024 if is_number(kib) else None


def headline_status(error):
    return "failed" if error else "not run"


# ---- Headline -------------------------------------------------------------------------


@dataclass
class HeadlineRow:
    label: str
    unit: str
    higher_is_better: bool
    # system -> measured value, or status text ("not run", "failed").
    cells: dict

    @property
    def ratio(self):
        """imapd ÷ Dovecot, or None unless both were measured."""
        return ratio(self.cells.get("imapd"), self.cells.get("dovecot"))


def ratio(numerator, denominator):
    if is_number(numerator) and is_number(denominator) and denominator != 0:
        return numerator / denominator
    return None


def verdict(value_ratio, higher_is_better):
    """Which side the imapd/Dovecot ratio favours."""
    if abs(value_ratio - 1) < EVEN_MARGIN:
        return "about even"
    return "imapd better" if (value_ratio > 1) == higher_is_better else "Dovecot better"


def headline_rows(results):
    systems = system_list(results)
    rows = []

    def add(label, unit, higher_is_better, pick):
        rows.append(HeadlineRow(label, unit, higher_is_better, {s: pick(s) for s in systems}))

    def run_figure(profile, clients, transport, figure):
        def pick(system):
            run = find_run(results, system, profile, clients, transport)
            if run is None:
                return headline_status(section(results, system, "profiles")[1])
            return "failed" if "error" in run else figure(run)
        return pick

    def counts(profile):
        return sorted({r.get("clients") for s in systems for r in profile_runs(results, s)
                       if r.get("profile") == profile and is_number(r.get("clients"))})

    for n in counts(PERSISTENT_PROFILE):
        for transport in ("tls", "plain"):
            label = f"{PERSISTENT_PROFILE}, {n:,} clients, {TRANSPORT_NAMES[transport]}"
            add(label, "commands/s", True, run_figure(
                PERSISTENT_PROFILE, n, transport, lambda r: dig(r, "summary", "commands_per_s")))
            add(label + ", server CPU", "ms per 1,000 commands", False,
                run_figure(PERSISTENT_PROFILE, n, transport, server_cpu_ms))
    for n in counts("imaptest-default") or [10, 100]:
        add(f"imaptest-default (a login every 9 commands), {n:,} clients", "commands/s", True,
            run_figure("imaptest-default", n, "tls",
                       lambda r: dig(r, "summary", "commands_per_s")))

    def idle_memory(connections):
        def pick(system):
            for entry in idle_entries(results, system):
                if entry["connections"] == connections:
                    return entry.get("kib_per_connection")
            return headline_status(section(results, system, "idle")[1])
        return pick

    counts = sorted({e["connections"] for s in systems for e in idle_entries(results, s)})
    if not counts:
        add("TLS + IDLE memory per connection", "KiB", False, idle_memory(None))
    for n in counts:
        add(f"TLS + IDLE memory per connection, {n:,} connections", "KiB", False,
            idle_memory(n))

    def push_p99(kind):
        def pick(system):
            push, error = section(results, system, "push")
            pinned, unpinned = push_events(push)
            for event in pinned or unpinned:
                if event.get("kind") == kind:
                    return "failed" if "error" in event else event.get("p99_ms")
            return headline_status(error)
        return pick

    add("IDLE push p99, append", "ms", False, push_p99("append"))
    add("IDLE push p99, revise", "ms", False, push_p99("revise"))

    def scalar(name, key):
        def pick(system):
            data, error = section(results, system, name)
            return headline_status(error) if data is None else data.get(key, "not run")
        return pick

    add("50 MB FETCH", "MB/s", True, scalar("transfer", "fetch_mb_s"))
    add("50 MB APPEND", "MB/s", True, scalar("transfer", "append_mb_s"))
    add("Login storm", "logins/s", True, scalar("login_storm", "logins_per_s"))
    return rows


# ---- Targets --------------------------------------------------------------------------

# What the system is held to in this bench. Each target names the profile it is measured
# on: a profile bound by password hashing (imaptest-default logs in every nine commands)
# says nothing about command throughput, so the throughput and CPU targets are measured
# on persistent sessions.
PERSISTENT_PROFILE = "imaptest-persistent"
TARGET_CLIENTS = (10, 100)
TARGET_CPU_FRACTION = 0.5     # gateway + service CPU per command, of Dovecot's
TARGET_THROUGHPUT_RATIO = 1.5  # commands/s, of Dovecot's
TARGET_IDLE_KIB = 16.0
TARGET_PUSH_P99_MS = 50.0
TARGET_PUSH_CLIENTS = 5_000


@dataclass
class TargetRow:
    target: str
    measured: str
    status: str  # "met", "missed" or "not measured"


def _pair(results, profile, clients, transport):
    ours = find_run(results, "imapd", profile, clients, transport)
    theirs = find_run(results, "dovecot", profile, clients, transport)
    if not ours or not theirs or "error" in ours or "error" in theirs:
        return None, None
    return ours, theirs


def _share_text(ours, theirs):
    shares = [loadgen_share(ours), loadgen_share(theirs)]
    if not all(is_number(x) for x in shares):
        return ""
    return (f"; load generator's share of the CPU used: {shares[0]:.0%} (imapd run), "
            f"{shares[1]:.0%} (Dovecot run)")


def persistent_targets(results):
    rows = []
    for transport in ("tls", "plain"):
        for clients in TARGET_CLIENTS:
            where = f"{PERSISTENT_PROFILE}, {clients} clients, {TRANSPORT_NAMES[transport]}"
            ours, theirs = _pair(results, PERSISTENT_PROFILE, clients, transport)
            cpu_label = (f"{where}: gateway + service CPU per 1,000 commands at most "
                         f"{TARGET_CPU_FRACTION:.0%} of Dovecot's")
            rate_label = (f"{where}: at least {TARGET_THROUGHPUT_RATIO:g}× Dovecot's "
                          "commands/s")
            if ours is None:
                rows.append(TargetRow(cpu_label, "needs both systems on this run",
                                      "not measured"))
                rows.append(TargetRow(rate_label, "needs both systems on this run",
                                      "not measured"))
                continue
            a, b = server_cpu_ms(ours), server_cpu_ms(theirs)
            if is_number(a) and is_number(b) and b > 0:
                gw = dig(ours, "cpu_s_per_1000_commands", "gateway")
                svc = dig(ours, "cpu_s_per_1000_commands", "service")
                split = (f" (gateway {fmt(gw * 1000)}, service {fmt(svc * 1000)})"
                         if is_number(gw) and is_number(svc) else "")
                rows.append(TargetRow(
                    cpu_label, f"{fmt(a)} ms{split} vs {fmt(b)} ms ({a / b:.2f}×)",
                    "met" if a <= TARGET_CPU_FRACTION * b else "missed"))
            else:
                rows.append(TargetRow(cpu_label, "no commands completed", "not measured"))
            x = dig(ours, "summary", "commands_per_s")
            y = dig(theirs, "summary", "commands_per_s")
            if is_number(x) and is_number(y) and y > 0:
                rows.append(TargetRow(
                    rate_label,
                    f"{fmt(x)} vs {fmt(y)} commands/s ({x / y:.2f}×){_share_text(ours, theirs)}",
                    "met" if x >= TARGET_THROUGHPUT_RATIO * y else "missed"))
            else:
                rows.append(TargetRow(rate_label, "no commands completed", "not measured"))
    return rows


def login_cycle_targets(results):
    """The login-per-cycle mix (imaptest-default): hash-bound, so it stands for login
    cost, not command throughput; held to at least Dovecot's commands/s."""
    rows = []
    for clients in TARGET_CLIENTS:
        label = (f"imaptest-default (a login every 9 commands; bound by password hashing), "
                 f"{clients} clients, IMAPS: at least Dovecot's commands/s")
        ours, theirs = _pair(results, "imaptest-default", clients, "tls")
        if ours is None:
            rows.append(TargetRow(label, "needs both systems on this run", "not measured"))
            continue
        x = dig(ours, "summary", "commands_per_s")
        y = dig(theirs, "summary", "commands_per_s")
        if is_number(x) and is_number(y) and y > 0:
            rows.append(TargetRow(label, f"{fmt(x)} vs {fmt(y)} commands/s ({x / y:.2f}×)",
                                  "met" if x >= y else "missed"))
        else:
            rows.append(TargetRow(label, "no commands completed", "not measured"))
    return rows


def transfer_targets(results):
    rows = []
    ours, _ = section(results, "imapd", "transfer")
    theirs, _ = section(results, "dovecot", "transfer")
    for key, what in (("append_mb_s", "APPEND"), ("fetch_mb_s", "FETCH")):
        label = f"transfer (one 50 MB message, IMAPS): {what} at least Dovecot's MB/s"
        x, y = dig(ours or {}, key), dig(theirs or {}, key)
        if is_number(x) and is_number(y) and y > 0:
            rows.append(TargetRow(label, f"{fmt(x)} vs {fmt(y)} MB/s ({x / y:.2f}×)",
                                  "met" if x >= y else "missed"))
        else:
            rows.append(TargetRow(label, "needs both systems' transfer figures", "not measured"))
    growth = dig(ours or {}, "service_memory_kib_growth")
    size = dig(ours or {}, "size_bytes")
    label = ("transfer: the mailbox service's RSS grows by less than the message size "
             "(streamed to the store, never held whole)")
    if is_number(growth) and is_number(size):
        rows.append(TargetRow(label, f"{mib(growth):.1f} MiB for a {size / 2**20:.0f} MiB "
                              "message", "met" if growth * 1024 < size else "missed"))
    else:
        rows.append(TargetRow(label, "service memory not measured", "not measured"))
    return rows


def idle_target(results):
    entries = [e for e in idle_entries(results, "imapd") if is_number(e.get("kib_per_connection"))]
    label = f"idle: gateway RSS per idle TLS connection at most {TARGET_IDLE_KIB:g} KiB"
    if not entries:
        return [TargetRow(label, "idle scenario not run for imapd", "not measured")]
    worst = max(e["kib_per_connection"] for e in entries)
    shown = ", ".join(f"{fmt(e['kib_per_connection'])} KiB at {e['connections']:,}"
                      for e in entries)
    return [TargetRow(label, shown, "met" if worst <= TARGET_IDLE_KIB else "missed")]


def push_events(push):
    """(events measured with the load generator pinned to its own core, events measured
    unpinned); either may be empty. Older results have only unpinned events."""
    push = push or {}
    pinned = dig(push, "pinned", "events") or []
    unpinned = dig(push, "unpinned", "events") or push.get("events") or []
    return pinned, unpinned


def push_target(results):
    push, _ = section(results, "imapd", "push")
    pinned, unpinned = push_events(push)
    clients = (push or {}).get("clients")
    label = (f"push ({TARGET_PUSH_CLIENTS:,} clients of one user in IDLE, load generator "
             f"pinned to its own core): p99 under {TARGET_PUSH_P99_MS:g} ms after an APPEND "
             "and after a Revise")

    def shown(events):
        return ", ".join(f"{e.get('kind')} {fmt(e.get('p99_ms'))} ms" for e in events)

    events = pinned
    pinned_error = dig(push or {}, "pinned", "error")
    measured = (shown(pinned) if pinned else
                f"pinned round failed: {pinned_error}" if pinned_error else "not run pinned")
    if unpinned:
        measured += f" (unpinned: {shown(unpinned)})"
    if is_number(clients):
        measured += f"; {clients:,} clients"
    if not events or not all(is_number(e.get("p99_ms")) for e in events):
        return [TargetRow(label, measured, "not measured")]
    if any(e.get("missed") for e in events):
        return [TargetRow(label, measured + "; some clients were never told", "missed")]
    if not is_number(clients) or clients < TARGET_PUSH_CLIENTS:
        return [TargetRow(label, measured + "; fewer clients than the target", "not measured")]
    worst = max(e["p99_ms"] for e in events)
    return [TargetRow(label, measured, "met" if worst < TARGET_PUSH_P99_MS else "missed")]


def target_rows(results):
    return (persistent_targets(results) + login_cycle_targets(results)
            + transfer_targets(results) + idle_target(results) + push_target(results))


def render_targets(results):
    body = []
    for row in target_rows(results):
        css = {"met": "good", "missed": "bad"}.get(row.status, "muted")
        body.append([text(row.target), text(row.measured),
                     f'<td class="{css}">{esc(row.status)}</td>'])
    return (table(["Target", "Measured", "Status"], body)
            + '<p class="small">The targets the system is held to in this bench, each on the '
            "profile it names. CPU is utime + stime from /proc of every server process "
            "(gateway and mailbox service; every Dovecot process); the load generator "
            "shares the same cores and its CPU is given beside. A smoke run is too small to "
            "meet or miss them.</p>")


# ---- Capacity model -------------------------------------------------------------------


def commands_per_cpu_second(cpu_s_per_1000_commands):
    """Commands one fully busy core serves per second."""
    return 1000 / cpu_s_per_1000_commands


def cores_needed(users, commands_per_s_per_user, commands_per_cpu_s,
                 utilisation=TARGET_UTILISATION):
    """Cores that keep the offered load at the target utilisation."""
    return users * commands_per_s_per_user / commands_per_cpu_s / utilisation


def ram_needed_kib(connections, kib_per_connection, base_kib):
    return connections * kib_per_connection + base_kib


def reconnect_seconds(users, logins_per_s):
    """Time for every user to log in again, e.g. after a restart, at the measured rate."""
    return users / logins_per_s


@dataclass
class Need:
    users: int
    cores: float | None  # None for unpaced profiles or when CPU was not measured
    ram_kib: float | None


@dataclass
class CapacityRow:
    system: str
    profile: str
    clients: int | None = None  # of the run the figures come from
    duration_s: float | None = None
    commands_per_s: float | None = None
    paced: bool = True
    commands_per_cpu_s: float | None = None
    commands_per_s_per_user: float | None = None
    kib_per_connection: float | None = None  # gateway side (Dovecot: all its processes)
    service_kib_per_connection: float | None = None
    base_kib: float | None = None
    needs: list = field(default_factory=list)
    note: str = ""

    @property
    def commands_per_s_per_core(self):
        """Sustained commands/s of one core at the target utilisation."""
        if self.commands_per_cpu_s is None:
            return None
        return self.commands_per_cpu_s * TARGET_UTILISATION

    @property
    def connection_kib(self):
        """Memory per connection over every process that was measured."""
        if self.kib_per_connection is None:
            return None
        return self.kib_per_connection + (self.service_kib_per_connection or 0)


def connection_memory(results, system):
    """The idle scenario's entry with the most connections that has a per-connection figure."""
    entries = [e for e in idle_entries(results, system) if is_number(e.get("kib_per_connection"))]
    return entries[-1] if entries else None


def capacity(results, users=DEFAULT_USERS):
    """One row per system and profile, from the profile's run with the most clients that
    had no errors; render_assumptions states what the model assumes."""
    rows = []
    # Profile by profile, so that the systems' rows for a profile sit together.
    for profile in profile_names(results):
        for system in system_list(results):
            memory = connection_memory(results, system)
            runs = [r for r in profile_runs(results, system) if r.get("profile") == profile]
            if not runs:
                continue
            row = CapacityRow(system, profile, paced=profile not in UNPACED_PROFILES)
            rows.append(row)
            clean = [r for r in runs if run_errors(r) == 0 and is_number(r.get("clients"))]
            if not clean:
                row.note = "every run failed or had errors"
                continue
            run = max(clean, key=lambda r: r["clients"])
            row.clients = run["clients"]
            row.duration_s = run.get("duration_s")
            row.commands_per_s = dig(run, "summary", "commands_per_s")
            cpu = dig(run, "cpu_s_per_1000_commands", "total")
            if is_number(cpu) and cpu > 0:
                row.commands_per_cpu_s = commands_per_cpu_second(cpu)
            if row.paced and is_number(row.commands_per_s) and row.clients > 0:
                row.commands_per_s_per_user = row.commands_per_s / row.clients
            if memory is not None:
                row.kib_per_connection = memory["kib_per_connection"]
                service = memory.get("service_kib_per_connection")
                row.service_kib_per_connection = service if is_number(service) else None
            base = dig(run, "rss_kib_peak", "total")
            row.base_kib = base if is_number(base) else None
            for n in users:
                cores = None
                if row.commands_per_s_per_user is not None and row.commands_per_cpu_s:
                    cores = cores_needed(n, row.commands_per_s_per_user, row.commands_per_cpu_s)
                ram = None
                if row.connection_kib is not None and row.base_kib is not None:
                    ram = ram_needed_kib(n, row.connection_kib, row.base_kib)
                row.needs.append(Need(n, cores, ram))
    return rows


# ---- SVG charts -----------------------------------------------------------------------


@dataclass
class Series:
    name: str
    points: list  # [(x, y), ...]
    colour: str
    dashed: bool = False


def linear_ticks(lo, hi, target=5):
    """Round tick values (1, 2 or 5 × 10^k apart) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1)
    raw = (hi - lo) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def log_ticks(lo, hi):
    """Decades covering [lo, hi] (lo > 0), with 2 and 5 between them when there are few."""
    first = math.floor(math.log10(lo))
    last = max(math.ceil(math.log10(hi)), first + 1)
    multiples = (1, 2, 5) if last - first <= 3 else (1,)
    return [round(m * 10.0 ** e, 10) for e in range(first, last + 1) for m in multiples
            if m * 10.0 ** e <= 10.0 ** last]


def tick_label(value):
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:g}"


class Axis:
    """Maps data values to 0..1 along an axis: log10, or linear from zero (every quantity
    charted here is a count, a rate or a size, so zero is the honest baseline)."""

    def __init__(self, values, log=False, top=None):
        if log:
            values = [v for v in values if v > 0] or [1]
            self.ticks = log_ticks(min(values), max(values))
        else:
            self.ticks = linear_ticks(min(0, min(values)),
                                      top if top is not None else max(values))
        self.log = log
        self.lo, self.hi = self._t(self.ticks[0]), self._t(self.ticks[-1])

    def _t(self, value):
        return math.log10(value) if self.log else value

    def frac(self, value):
        return (self._t(value) - self.lo) / (self.hi - self.lo)


CHART_W, CHART_H = 560, 290
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 68, 30, 12, 46


def line_chart(title, series, x_label, y_label, x_log=False, y_top=None):
    """A <figure> with an SVG line chart and an HTML legend; "no data" without points."""
    series = [Series(s.name, [(x, y) for x, y in s.points
                              if is_number(x) and is_number(y) and (x > 0 or not x_log)],
                     s.colour, s.dashed) for s in series]
    series = [s for s in series if s.points]
    caption = f"<figcaption>{esc(title)}</figcaption>"
    if not series:
        return f'<figure class="chart">{caption}<p class="muted">no data</p></figure>'
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    x_axis = Axis(xs, log=x_log)
    y_axis = Axis(ys, top=y_top)
    plot_w = CHART_W - MARGIN_L - MARGIN_R
    plot_h = CHART_H - MARGIN_T - MARGIN_B

    def px(x):
        return MARGIN_L + x_axis.frac(x) * plot_w

    def py(y):
        return MARGIN_T + (1 - y_axis.frac(y)) * plot_h

    bottom = MARGIN_T + plot_h
    parts = [f'<svg viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="{esc(title)}">']
    for tick in x_axis.ticks:
        x = px(tick)
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{MARGIN_T}" x2="{x:.1f}" '
                     f'y2="{bottom}"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" '
                     f'text-anchor="middle">{esc(tick_label(tick))}</text>')
    for tick in y_axis.ticks:
        y = py(tick)
        parts.append(f'<line class="grid" x1="{MARGIN_L}" y1="{y:.1f}" '
                     f'x2="{MARGIN_L + plot_w}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{MARGIN_L - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{esc(tick_label(tick))}</text>')
    parts.append(f'<rect class="frame" x="{MARGIN_L}" y="{MARGIN_T}" width="{plot_w}" '
                 f'height="{plot_h}"/>')
    parts.append(f'<text class="label" x="{MARGIN_L + plot_w / 2:.1f}" y="{CHART_H - 8}" '
                 f'text-anchor="middle">{esc(x_label)}</text>')
    parts.append(f'<text class="label" transform="translate(14 {MARGIN_T + plot_h / 2:.1f}) '
                 f'rotate(-90)" text-anchor="middle">{esc(y_label)}</text>')
    for s in series:
        dash = ' stroke-dasharray="7 4"' if s.dashed else ""
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{s.colour}" '
                     f'stroke-width="2"{dash}/>')
        # Markers make sparse series (a few idle counts, a two-second smoke run) visible.
        if len(s.points) <= 12:
            parts.extend(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{s.colour}"/>'
                         for x, y in s.points)
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch" style="border-top: 3px {"dashed" if s.dashed else "solid"} '
        f'{s.colour}"></span>{esc(s.name)}</li>' for s in series)
    return (f'<figure class="chart">{caption}{"".join(parts)}'
            f'<ul class="legend">{legend}</ul></figure>')


def cdf_points(cdf, scale=1.0):
    """[[x, fraction], ...] as (x × scale, percent) points."""
    return [(p[0] * scale, p[1] * 100) for p in cdf or []
            if isinstance(p, (list, tuple)) and len(p) == 2 and is_number(p[0]) and is_number(p[1])]


# ---- Page sections --------------------------------------------------------------------


def table(head, rows, head_rows=None):
    """head: column titles; rows: lists of already-escaped cell HTML, numbers right-aligned
    by the caller's class. head_rows replaces the single header row when given."""
    thead = head_rows or "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f"<table><thead>{thead}</thead><tbody>{body}</tbody></table>"


def num(value, digits=None):
    return f'<td class="num">{esc(fmt(value, digits))}</td>'


def text(value):
    return f"<td>{esc(value)}</td>"


def error_block(system, error):
    return f'<p class="error">{esc(SYSTEM_NAMES.get(system, system))}: {esc(error)}</p>'


def render_meta(results):
    meta = results.get("meta") or {}
    host = meta.get("host") or {}
    memory = host.get("mem_total_kib")
    host_text = ", ".join(x for x in [
        f"{host['cores']} cores" if "cores" in host else "",
        str(host.get("cpu_model") or ""),
        f"{memory / 1024 ** 2:.1f} GiB RAM" if is_number(memory) else "",
        f"Linux {host['kernel']}" if host.get("kernel") else ""] if x)
    items = [("Started", meta.get("started")), ("Commit", meta.get("git_commit")),
             ("Host", host_text), ("Systems", ", ".join(
                 SYSTEM_NAMES.get(s, s) for s in system_list(results))),
             ("Smoke run", "yes" if meta.get("smoke") else "no"),
             ("Password hash", meta.get("password_hash"))]
    for system, note in (meta.get("notes") or {}).items():
        items.append((f"{SYSTEM_NAMES.get(system, system)} config", note))
    out = ['<dl class="meta">']
    for key, value in items:
        shown = value if value not in (None, "") else "—"
        out.append(f"<dt>{esc(key)}</dt><dd>{esc(shown)}</dd>")
    out.append("</dl>")
    if meta.get("smoke"):
        out.append('<p class="banner">Smoke run: a few seconds and a handful of clients per '
                   'scenario. It shows that the suite works end to end; its numbers are not '
                   'measurements.</p>')
    return "".join(out)


def render_headline(results):
    systems = system_list(results)
    compare = "imapd" in systems and "dovecot" in systems
    head = ["Figure", "Unit"] + [SYSTEM_NAMES.get(s, s) for s in systems]
    if compare:
        head += ["imapd ÷ Dovecot", "Better"]
    rows = []
    for row in headline_rows(results):
        cells = [text(row.label), text(row.unit)]
        cells += [num(row.cells[s]) if is_number(row.cells[s])
                  else f'<td class="num muted">{esc(fmt(row.cells[s]))}</td>' for s in systems]
        if compare:
            direction = "higher" if row.higher_is_better else "lower"
            if row.ratio is None:
                cells.append('<td class="num muted">—</td>')
            else:
                word = verdict(row.ratio, row.higher_is_better)
                css = {"imapd better": "good", "Dovecot better": "bad"}.get(word, "")
                cells.append(f'<td class="num {css}" title="{esc(word)}">{row.ratio:.2f}×'
                             f' <span class="small">({esc(word)})</span></td>')
            cells.append(text(f"{direction} is better"))
        rows.append(cells)
    note = ""
    if compare:
        note = (f'<p class="small">A ratio within {EVEN_MARGIN:.0%} of 1 counts as about even. '
                "Memory per connection is from the idle scenario (TLS, logged in, IDLE).</p>")
    return table(head, rows) + note


def render_profiles(results):
    systems = system_list(results)
    out = [status_line(s, section(results, s, "profiles")[1])
           for s in systems if not profile_runs(results, s)]
    names = profile_names(results)
    if not names:
        return "".join(out) + '<p class="muted">No profile runs.</p>'
    head_rows = (
        '<tr><th rowspan="2">Clients</th><th rowspan="2">System</th><th rowspan="2">Run s</th>'
        '<th rowspan="2">Commands/s</th><th colspan="3">Latency ms</th>'
        '<th rowspan="2">Errors</th><th colspan="6">CPU s per 1000 commands</th>'
        '<th colspan="3">Peak RSS MiB</th></tr>'
        '<tr><th>p50</th><th>p99</th><th>p99.9</th><th>gateway</th><th>service</th>'
        '<th>PostgreSQL</th>'
        '<th>server total</th><th>load generator</th><th>load generator share</th>'
        '<th>gateway</th><th>service</th><th>total</th></tr>')
    for profile in names:
        for transport in ("tls", "plain"):
            runs = [(r.get("clients") or 0, systems.index(s), s, r) for s in systems
                    for r in profile_runs(results, s)
                    if r.get("profile") == profile and transport_of(r) == transport]
            if not runs:
                continue
            rows = []
            for clients, _, system, run in sorted(runs, key=lambda t: t[:2]):
                cells = [num(clients), text(SYSTEM_NAMES.get(system, system))]
                if "error" in run:
                    cells.append(status_cells(run["error"], 15))
                    rows.append(cells)
                    continue
                summary = run.get("summary") or {}
                latency = summary.get("latency_us") or {}
                cpu = run.get("cpu_s_per_1000_commands") or {}
                rss = run.get("rss_kib_peak") or {}
                cells += [num(run.get("duration_s"), 0), num(summary.get("commands_per_s")),
                          num(ms(latency.get("p50"))), num(ms(latency.get("p99"))),
                          num(ms(latency.get("p999")))]
                cells.append(errors_cell(summary.get("errors")))
                cells += [num(cpu.get(k), 3)
                          for k in ("gateway", "service", "postgres", "total", "loadgen")]
                share = loadgen_share(run)
                cells.append(num(share * 100 if is_number(share) else None, 0))
                cells += [num(mib(rss.get(k)), 1) for k in ("gateway", "service", "total")]
                rows.append(cells)
            out.append(f"<h3>{esc(profile)} over {esc(TRANSPORT_NAMES[transport])}</h3>"
                       + table(None, rows, head_rows))
    out.append('<p class="small">Server total: gateway + mailbox service (every replica) + '
               "PostgreSQL's processes where the topology has them, or every Dovecot "
               "process. Load generator share: its CPU as a percentage of all CPU the run "
               "used (server + load generator), on the same cores.</p>")
    return "".join(out)


def errors_cell(errors):
    if not isinstance(errors, dict):
        return '<td class="num muted">—</td>'
    total = errors.get("total", 0)
    detail = ", ".join(f"{k} {v}" for k, v in errors.items() if k != "total" and v)
    css = "num bad" if total else "num"
    suffix = f' <span class="small">({esc(detail)})</span>' if detail else ""
    return f'<td class="{css}">{esc(fmt(total, 0))}{suffix}</td>'


def render_capacity(results, users=DEFAULT_USERS):
    rows = capacity(results, users)
    if not rows:
        return '<p class="muted">No profile runs, so no capacity figures.</p>'
    head_rows = (
        '<tr><th rowspan="2">Profile</th><th rowspan="2">System</th>'
        '<th rowspan="2">From run (clients)</th><th rowspan="2">Commands/s</th>'
        '<th rowspan="2">Commands per CPU-s</th>'
        f'<th rowspan="2">Commands/s per core at {TARGET_UTILISATION:.0%}</th>'
        '<th rowspan="2">Commands/s per user</th><th rowspan="2">KiB per connection</th>'
        + "".join(f'<th colspan="2">{n:,} users</th>' for n in users) + "</tr><tr>"
        + "<th>cores</th><th>RAM GiB</th>" * len(users) + "</tr>")
    body = []
    for row in rows:
        cells = [text(row.profile), text(SYSTEM_NAMES.get(row.system, row.system))]
        if row.note:
            cells.append(f'<td colspan="{6 + 2 * len(users)}" class="muted">{esc(row.note)}</td>')
            body.append(cells)
            continue
        cells += [num(row.clients), num(row.commands_per_s), num(row.commands_per_cpu_s),
                  num(row.commands_per_s_per_core)]
        if row.paced:
            cells.append(num(row.commands_per_s_per_user, 3))
        else:
            cells.append('<td class="muted">— (no think time)</td>')
        cells.append(num(row.connection_kib, 1))
        for need in row.needs:
            cells.append(num(need.cores, 1) if row.paced else '<td class="num muted">—</td>')
            cells.append(num(need.ram_kib / 1024 ** 2 if need.ram_kib is not None else None, 1))
        body.append(cells)
    return (table(None, body, head_rows) + render_reconnect(results, users)
            + render_assumptions(results, rows))


def render_reconnect(results, users):
    rows = []
    for system in system_list(results):
        storm, _ = section(results, system, "login_storm")
        rate = (storm or {}).get("logins_per_s")
        if is_number(rate) and rate > 0:
            rows.append([text(SYSTEM_NAMES.get(system, system)), num(rate)]
                        + [f'<td class="num">{esc(duration(reconnect_seconds(n, rate)))}</td>'
                           for n in users])
    if not rows:
        return ""
    head = ["System", "Logins/s measured"] + [f"All {n:,} users log in again" for n in users]
    return ("<h3>Reconnecting everyone</h3><p>After a restart every client logs in again; at "
            "the login storm's rate (password hash included) that takes:</p>" + table(head, rows))


def duration(seconds):
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds / 3600:,.1f} h"


def render_assumptions(results, rows):
    meta = results.get("meta") or {}
    host = meta.get("host") or {}
    cores = host.get("cores", "?")
    model = host.get("cpu_model") or "an unrecorded CPU model"
    tls = {dig(r, "summary", "tls") for s in system_list(results) for r in profile_runs(results, s)}
    tls_text = {frozenset({True}): "with TLS", frozenset({False}): "without TLS"}.get(
        frozenset(tls - {None}), "partly with TLS (see each run's settings)")
    service_known = any(r.service_kib_per_connection is not None for r in rows)
    durations = sorted({r.duration_s for r in rows if is_number(r.duration_s)})
    items = [
        f"Each user holds one IMAP connection, and a user of a profile issues commands at the "
        f"rate the profile's simulated clients did. Profiles without think time "
        f"({', '.join(sorted(UNPACED_PROFILES))}) drive the server as fast as it answers, so "
        f"their rate says nothing about users: read them as commands/s per core.",
        f"Measured on {cores} cores of {model}; the load generator ran on the same machine "
        f"and competed for those cores. Its CPU is not counted, but commands/s are lower "
        f"than the server alone could reach.",
        f"Traffic went over loopback {tls_text}: no network latency, no NIC or interrupt "
        f"cost, no packet loss. Real networks add latency per command and CPU per packet.",
        "imapd's mailbox service kept its SQLite store on local disk; the page cache was warm "
        "and the mailboxes were small (the populate step's messages).",
        "Figures come from each profile's run with the most clients that had no errors. "
        "Commands per CPU-second = 1000 ÷ (CPU seconds per 1000 commands), counting both the "
        "gateway and the mailbox service for imapd" + (
            ", and all of Dovecot's processes (master, login, auth, imap) for Dovecot."
            if "dovecot" in system_list(results) else "."),
        f"Cores = users × commands/s per user ÷ commands per CPU-second ÷ "
        f"{TARGET_UTILISATION:.0%} target utilisation. This assumes throughput grows "
        f"linearly with cores; {cores} cores cannot show whether it does beyond that.",
        "RAM = users × memory per connection + base, where memory per connection comes from "
        "the idle scenario's largest count (TLS, logged in, IDLE) and base is the peak RSS of "
        "all the system's processes during the run the row comes from (which already holds "
        "that run's connections, so it errs high). " + (
            "The mailbox service's memory per connection is included." if service_known else
            "imapd's mailbox service memory per connection was not measured, so it is not "
            "included (only its share of the base)."),
        "Not included: the operating system, the page cache the store needs, TLS session "
        "caches beyond what the processes hold, logs, and headroom for spikes.",
    ]
    if durations:
        items.append(
            f"Runs lasted {', '.join(fmt(d, 0) for d in durations)} s. A profile whose cycle "
            "is longer than its run (mobile's 5-minute IDLE) is caught mostly in its connect "
            "phase, so its per-user rate over-states the steady state.")
    if meta.get("password_hash"):
        items.append(f"Password hashing: {meta['password_hash']}. It dominates login cost "
                     f"(see the login storm) but not steady-state commands.")
    return ("<h3>Assumptions</h3><ul class=\"prose\">"
            + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")


def run_label(system, clients, transport="tls"):
    suffix = "" if transport == "tls" else f" · {TRANSPORT_NAMES.get(transport, transport)}"
    return f"{SYSTEM_NAMES.get(system, system)} · {clients:,} clients{suffix}"


def render_throughput_charts(results):
    systems = system_list(results)
    charts = []
    for profile in profile_names(results):
        runs = [(s, r) for s in systems for r in profile_runs(results, s)
                if r.get("profile") == profile and r.get("samples")]
        if not runs:
            continue
        counts = sorted({r.get("clients") or 0 for _, r in runs})
        series = [Series(run_label(s, r.get("clients") or 0, transport_of(r)),
                         [(p.get("t"), p.get("commands")) for p in r["samples"]],
                         PALETTE[counts.index(r.get("clients") or 0) % len(PALETTE)],
                         dashed=s != "imapd")
                  for s, r in sorted(runs, key=lambda sr: (sr[1].get("clients") or 0,
                                                           systems.index(sr[0])))]
        charts.append(line_chart(profile, series, "seconds into the run", "commands/s"))
    return charts_grid(charts, "No per-second samples.")


def render_latency_charts(results):
    systems = system_list(results)
    charts = []
    for profile in profile_names(results):
        series = []
        for system in systems:
            runs = [r for r in profile_runs(results, system) if r.get("profile") == profile
                    and dig(r, "summary", "latency_cdf")]
            if runs:
                run = max(runs, key=lambda r: (r.get("clients") or 0, transport_of(r) == "tls"))
                series.append(Series(run_label(system, run.get("clients") or 0,
                                               transport_of(run)),
                                     cdf_points(run["summary"]["latency_cdf"], 1 / 1000),
                                     SYSTEM_COLOURS.get(system, PALETTE[-1])))
        if series:
            charts.append(line_chart(profile, series, "latency ms (log scale)",
                                     "% of commands at or below", x_log=True, y_top=100))
    return charts_grid(charts, "No latency distributions.")


def status_line(system, error):
    """A paragraph saying a system's section failed (with its error) or was not run."""
    if error:
        return error_block(system, error)
    return f'<p class="muted">{esc(SYSTEM_NAMES.get(system, system))}: not run</p>'


def status_cells(error, colspan):
    """The rest of a table row whose section failed or was not run."""
    css = "error-cell" if error else "muted"
    return f'<td colspan="{colspan}" class="{css}">{esc(error or "not run")}</td>'


def render_memory(results):
    notes, total, per_connection, rows = [], [], [], []
    for system in system_list(results):
        entries = idle_entries(results, system)
        if not entries:
            notes.append(status_line(system, section(results, system, "idle")[1]))
            continue
        name = SYSTEM_NAMES.get(system, system)
        colour = SYSTEM_COLOURS.get(system, PALETTE[-1])
        total.append(Series(name, [(e["connections"], mib(e.get("memory_kib_after")))
                                   for e in entries], colour))
        per_connection.append(Series(name, [(e["connections"], e.get("kib_per_connection"))
                                            for e in entries], colour))
        rows += [[text(name), num(e["connections"]), num(e.get("established")),
                  num(mib(e.get("memory_kib_before")), 1), num(mib(e.get("memory_kib_after")), 1),
                  num(e.get("kib_per_connection"), 1), text(e.get("what", ""))] for e in entries]
    if not rows:
        return "".join(notes)
    charts = [line_chart("Total memory", total, "connections (TLS, IDLE)", "MiB"),
              line_chart("Memory per connection", per_connection, "connections (TLS, IDLE)",
                         "KiB per connection")]
    head = ["System", "Connections", "Established", "Before MiB", "After MiB",
            "KiB per connection", "Measured"]
    return "".join(notes) + charts_grid(charts, "") + table(head, rows)


def render_push(results):
    notes, by_kind, rows = [], {}, []
    for system in system_list(results):
        push, error = section(results, system, "push")
        pinned, unpinned = push_events(push)
        if not pinned and not unpinned:
            notes.append(status_line(system, error))
            continue
        name = SYSTEM_NAMES.get(system, system)
        if dig(push, "pinned", "error"):
            rows.append([text(name), text("pinned"), text("—"),
                         status_cells(push["pinned"]["error"], 6)])
        for placement, events in (("pinned", pinned), ("unpinned", unpinned)):
            for event in events:
                kind = event.get("kind", "?")
                if "error" in event:
                    rows.append([text(name), text(placement), text(kind),
                                 status_cells(event["error"], 6)])
                    continue
                by_kind.setdefault(kind, []).append(Series(
                    f"{name}, {placement} ({fmt(push.get('clients'), 0)} clients)",
                    cdf_points(event.get("cdf")), SYSTEM_COLOURS.get(system, PALETTE[-1]),
                    dashed=placement == "unpinned"))
                rows.append([text(name), text(placement), text(kind), text(event.get("how", "")),
                             num(event.get("seen"), 0), num(event.get("missed"), 0),
                             num(event.get("p50_ms")), num(event.get("p99_ms")),
                             num(event.get("max_ms"))])
    if not rows:
        return "".join(notes)
    charts = [line_chart(f"Push after {kind}", series, "ms from change to untagged response "
                         "(log scale)", "% of clients notified by then", x_log=True, y_top=100)
              for kind, series in by_kind.items()]
    head = ["System", "Load generator", "Event", "How", "Seen", "Missed", "p50 ms", "p99 ms",
            "max ms"]
    note = ('<p class="small">"pinned": the load generator runs on its own core (taskset) '
            "and the servers on the other, so the figure is the servers'; \"unpinned\": "
            "all share both cores.</p>")
    return "".join(notes) + charts_grid(charts, "") + table(head, rows) + note


def render_transfer_and_logins(results):
    transfer_rows, login_rows = [], []
    for system in system_list(results):
        name = SYSTEM_NAMES.get(system, system)
        data, error = section(results, system, "transfer")
        if data is None:
            transfer_rows.append([text(name), status_cells(error, 6)])
        else:
            size = data.get("size_bytes")
            transfer_rows.append([text(name), num(size / 2 ** 20 if is_number(size) else None, 0),
                                  num(data.get("append_mb_s")), num(data.get("fetch_mb_s")),
                                  num(mib(data.get("memory_kib_base")), 1),
                                  num(mib(data.get("memory_kib_peak")), 1),
                                  errors_cell(data.get("errors"))])
        data, error = section(results, system, "login_storm")
        if data is None:
            login_rows.append([text(name), status_cells(error, 8)])
        else:
            login_rows.append([text(name), num(data.get("clients"), 0),
                               num(data.get("logins_per_s")), num(data.get("handshakes_per_s")),
                               num(data.get("connect_p50_ms")), num(data.get("login_p50_ms")),
                               num(data.get("login_p99_ms")),
                               num(data.get("cpu_s_per_1000_logins")),
                               errors_cell(data.get("errors"))])
    return ("<h3>Large message transfer</h3>"
            + table(["System", "Size MiB", "APPEND MB/s", "FETCH MB/s", "Memory base MiB",
                     "Memory peak MiB", "Errors"], transfer_rows)
            + "<h3>Login storm</h3>"
            + table(["System", "Clients", "Logins/s", "Handshakes/s", "Connect p50 ms",
                     "Login p50 ms", "Login p99 ms", "CPU s per 1000 logins", "Errors"],
                    login_rows))


def charts_grid(charts, empty_text):
    if not charts:
        return f'<p class="muted">{esc(empty_text)}</p>' if empty_text else ""
    return f'<div class="charts">{"".join(charts)}</div>'


STYLE = """
body { font: 14px/1.45 system-ui, "DejaVu Sans", sans-serif; color: #1f2328; margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 24px; margin: 0 0 12px; }
h2 { font-size: 19px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #d0d7de; }
h3 { font-size: 15px; margin: 20px 0 6px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; vertical-align: top; }
th { background: #f3f5f8; font-weight: 600; text-align: center; }
td { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.error-cell { white-space: normal; }
.muted { color: #6e7781; }
.small { font-size: 11.5px; color: #57606a; }
.good { background: #e6f4ea; }
.bad { background: #fdecea; }
.error, .error-cell { color: #a40e26; }
p.error { background: #fdecea; padding: 6px 10px; border-left: 4px solid #a40e26; }
.banner { background: #fff8c5; border: 1px solid #d4a72c; padding: 8px 12px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 0; }
dl.meta dt { font-weight: 600; }
dl.meta dd { margin: 0; white-space: pre-wrap; }
.charts + table { margin-top: 14px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: 18px; }
figure.chart { margin: 0; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 10px; }
figure.chart figcaption { font-weight: 600; margin-bottom: 4px; }
figure.chart svg { width: 100%; height: auto; display: block; }
svg .grid { stroke: #e5e8ec; stroke-width: 1; }
svg .frame { fill: none; stroke: #8c959f; stroke-width: 1; }
svg .tick { font-size: 11px; fill: #57606a; }
svg .label { font-size: 12px; fill: #1f2328; }
ul.legend { list-style: none; padding: 0; margin: 4px 0 0; display: flex; flex-wrap: wrap;
            gap: 4px 16px; font-size: 12px; }
.swatch { display: inline-block; width: 26px; margin-right: 6px; vertical-align: middle; }
ul.prose { max-width: 980px; padding-left: 20px; }
ul.prose li { margin-bottom: 4px; }
div.flame { overflow-x: auto; }
"""


def render_flame(results, base_dir):
    """Each system's CPU flame graphs (one per process role) from the flame scenario,
    inlined from the SVG files next to results.json, with the hottest leaf frames."""
    out = []
    for system in system_list(results):
        name = SYSTEM_NAMES.get(system, system)
        data, error = section(results, system, "flame")
        if data is None:
            out.append(status_line(system, error))
            continue
        if "skipped" in data:
            out.append(f'<p class="muted">{esc(name)}: not measured ({esc(data["skipped"])})</p>')
            continue
        out.append(f"<h3>{esc(name)}: {esc(data.get('profile', ''))}, "
                   f"{fmt(data.get('clients'), 0)} clients over IMAPS, "
                   f"{fmt(data.get('duration_s'), 0)} s, {fmt(data.get('commands'), 0)} "
                   "commands</h3>")
        for role, path in sorted((data.get("svg") or {}).items()):
            samples = dig(data, "samples", role)
            out.append(f"<h4>{esc(role)} ({fmt(samples, 0)} samples at 499 Hz)</h4>")
            svg = None
            if base_dir:
                try:
                    with open(f"{base_dir}/{path}", encoding="utf-8") as f:
                        svg = f.read()
                except OSError:
                    svg = None
            out.append(f'<div class="flame">{svg}</div>' if svg else
                       f'<p class="muted">{esc(path)} (not found next to results.json)</p>')
            top = dig(data, "top_frames", role) or []
            if top:
                out.append(table(["Own frame (leaf)", "% of samples"],
                                 [[text(frame), num(share)] for frame, share in top]))
    out.append('<p class="small">Boxes are stack frames, widths their share of the '
               "process's samples; hover for counts. Debian's libraries have no frame "
               "pointers, so their frames often stand directly on [unknown].</p>")
    return "".join(out)


def render_html(results, base_dir=None):
    """The whole report as one HTML document. base_dir: where results.json lives (the
    flame graphs' SVG files are read from there and inlined)."""
    sections = [
        ("Headline", render_headline(results)),
        ("Targets", render_targets(results)),
        ("Capacity summary", render_capacity(results)),
        ("Profiles", render_profiles(results)),
        ("Throughput over time", render_throughput_charts(results)),
        ("Latency distribution at the largest client count", render_latency_charts(results)),
        ("Memory against idle connections", render_memory(results)),
        ("IDLE push latency", render_push(results)),
        ("Transfer and logins", render_transfer_and_logins(results)),
        ("CPU flame graphs", render_flame(results, base_dir)),
    ]
    commit = dig(results, "meta", "git_commit") or ""
    title = f"IMAP bench report {commit}".strip()
    body = "".join(f"<h2>{esc(name)}</h2>{content}" for name, content in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body><main>"
            f"<h1>{esc(title)}</h1>{render_meta(results)}{body}</main></body></html>\n")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: report.py RESULTS.json OUT.html", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        results = json.load(f)
    with open(argv[1], "w", encoding="utf-8") as f:
        f.write(render_html(results, base_dir=os.path.dirname(os.path.abspath(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
