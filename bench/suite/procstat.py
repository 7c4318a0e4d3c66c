"""CPU time and memory of server processes, read from /proc (Linux only).

The bench charges each system for every process it runs: our gateway and mailbox
service are one process each; Dovecot is a master with many children, some of which
come and go during a run. CPU is therefore counted over a process tree as
utime + stime + cutime + cstime of every live member: a child that exited was
reaped by a live parent, whose cutime/cstime now hold its time, so a delta between two
snapshots counts every process that ran in between exactly once.
"""

import os
import threading
import time

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    # The command name is in parentheses and may contain spaces.
    return data[data.rindex(")") + 2:].split()


def descendants(root):
    """root and every live process below it."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids):
    """utime + stime + cutime + cstime summed over pids, in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        # After the state field: utime, stime, cutime, cstime are fields 14-17 of stat.
        total += sum(int(v) for v in fields[11:15])
    return total / _TICKS


def _status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid):
    return _status_kib(pid, "VmRSS:")


def peak_rss_kib(pid):
    return _status_kib(pid, "VmHWM:")


def reset_peak_rss(pid):
    """Starts VmHWM again from the current RSS (proc(5), clear_refs value 5)."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
    except OSError:
        pass


def comm(pid):
    """The process's command name (/proc/PID/comm), "" once it has exited."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def pss_kib(pids):
    """Proportional set size summed over pids: shared pages are split between the
    processes that map them, so a many-process server is not charged its shared
    libraries once per process."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


class Sampler:
    """Samples memory of named roles every `interval` seconds on a thread, keeping
    each role's peak and a time series. `measure` maps a role to a function returning
    KiB."""

    def __init__(self, measure, interval=1.0):
        self.measure = measure
        self.interval = interval
        self.peak = {role: 0 for role in measure}
        self.series = []  # (seconds since start, {role: KiB})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.monotonic()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self):
        values = {role: fn() for role, fn in self.measure.items()}
        for role, value in values.items():
            self.peak[role] = max(self.peak[role], value)
        self.series.append((round(time.monotonic() - self._start, 2), values))

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)
