#!/usr/bin/env python3
"""Where the time goes: runs one load profile against our system with `perf record`
sampling the gateway and the mailbox service, then prints each process's hottest
symbols and shared objects.

Usage (after bench/run.sh or the same bazel build):
  python3 bench/suite/profile_cpu.py [--profile imaptest-default] [--clients 100]
      [--duration 30] [--out DIR]
Writes DIR/perf.data and DIR/{gateway,service}-{symbols,dsos}.txt. Needs Debian's
`linux-perf` (perf) and permission to sample (root here).
"""

import argparse
import collections
import os
import re
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_suite  # noqa: E402


def samples_by_process(perf_data):
    """(pid, dso, symbol) of every sample's own frame, from `perf script`. Grouped by
    process id here because `perf report --pid` keeps only the threads it saw start,
    and gRPC's threads of both processes share names."""
    result = subprocess.run(
        ["perf", "script", "-i", perf_data, "-G", "-F", "pid,tid,ip,sym,dso"],
        capture_output=True, text=True)
    for line in result.stdout.splitlines():
        match = re.match(r"\s*(\d+)/\d+\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if match:
            pid, sym, dso = match.groups()
            yield int(pid), os.path.basename(dso), sym


def flat_profile(samples, pid, key, path, lines=40):
    """Percentages of one process's samples by dso or by dso+symbol, hottest first."""
    counts = collections.Counter()
    for sample_pid, dso, sym in samples:
        if sample_pid == pid:
            counts[dso if key == "dso" else "%s  %s" % (dso, sym)] += 1
    total = sum(counts.values()) or 1
    body = ["%6.2f%%  %s" % (100.0 * n / total, name) for name, n in counts.most_common()
            if 100.0 * n / total >= 0.3]
    with open(path, "w") as f:
        f.write("# %d samples of process %d\n" % (total, pid) + "\n".join(body) + "\n")
    return body[:lines], total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="imaptest-default")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--populate", type=int, default=60)
    parser.add_argument("--argon2-memory-kib", type=int, default=19456)
    parser.add_argument("--argon2-time-cost", type=int, default=2)
    parser.add_argument("--out", default="/tmp/imapd-profile")
    opts = parser.parse_args()
    os.makedirs(opts.out, exist_ok=True)
    target = run_suite.Imapd(os.path.join(opts.out, "work"), opts.argon2_memory_kib,
                             opts.argon2_time_cost)
    try:
        target.add_users(["user%d" % i for i in range(1, opts.clients + 1)])
        profile = run_suite.profile_path(opts.profile)
        common = ["--profile=" + profile, "--users=%d" % opts.clients]
        run_suite.run_loadgen(target, os.path.join(opts.out, "populate"),
                              common + ["--clients=32", "--duration=1ms",
                                        "--populate=%d" % opts.populate], timeout=1800)
        roles = target.roles()
        gateway, service = roles["gateway"][0], roles["service"][0]
        perf_data = os.path.join(opts.out, "perf.data")
        # System-wide: gRPC's synchronous server starts threads while the run goes on,
        # which a per-process `perf record -p` would not follow.
        perf = subprocess.Popen(["perf", "record", "-a", "-F", "499", "-g", "-o", perf_data],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        summary, _ = run_suite.run_loadgen(
            target, os.path.join(opts.out, "run"),
            common + ["--clients=%d" % opts.clients, "--duration=%ds" % opts.duration],
            timeout=opts.duration + 600)
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=120)
        print("%s at %d clients: %.0f commands/s, p50 %.2f ms, p99 %.2f ms"
              % (opts.profile, opts.clients, summary["commands_per_s"],
                 summary["latency_us"]["p50"] / 1000, summary["latency_us"]["p99"] / 1000))
        samples = list(samples_by_process(perf_data))
        shares = collections.Counter(pid for pid, _, _ in samples)
        everything = len(samples) or 1
        for name, pid in (("gateway", gateway), ("service", service)):
            print("\n%s: %.1f%% of all samples on the machine"
                  % (name, 100.0 * shares[pid] / everything))
            for sort in ("dso", "sym"):
                path = os.path.join(opts.out, "%s-%ss.txt" % (name, sort))
                body, _ = flat_profile(samples, pid, sort, path)
                print("== %s by %s (%s)" % (name, sort, path))
                print("\n".join(body[:25]))
    finally:
        target.stop()


if __name__ == "__main__":
    main()
