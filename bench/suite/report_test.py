#!/usr/bin/env python3
"""Tests of report.py on synthetic results in run_suite.py's schema.

  python3 bench/suite/report_test.py                      # run the tests
  python3 bench/suite/report_test.py --sample OUT.html    # write a realistic-looking report
"""

import html.parser
import json
import math
import os
import random
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402

VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                 "source", "track", "wbr"}


class TagBalance(html.parser.HTMLParser):
    """Records tags closed out of order or left open; self-closing SVG tags are balanced."""

    def __init__(self):
        super().__init__()
        self.stack, self.problems, self.counts = [], [], {}

    def handle_starttag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag not in VOID_ELEMENTS:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def parse(page):
    checker = TagBalance()
    checker.feed(page)
    checker.close()
    return checker


# ---- Synthetic results ----------------------------------------------------------------


def lognormal_cdf(median, spread, scale=1.0):
    """[[x, fraction], ...] of a log-normal distribution, x in steps of about 10 %."""
    points, x = [], median / 20
    while x < median * 60:
        z = (math.log(x) - math.log(median)) / spread
        points.append([round(x * scale, 3), round(0.5 * (1 + math.erf(z / math.sqrt(2))), 5)])
        x *= 1.1
    points.append([round(x * scale, 3), 1.0])
    return points


def profile_run(profile, clients, commands_per_s, cpu_per_1000, rss_total_kib,
                errors=0, median_us=1500, seconds=20, rng=None, dovecot=False):
    rng = rng or random.Random(1)
    samples = [{"t": t, "open_connections": clients,
                "commands": round(commands_per_s * (0.9 + 0.2 * rng.random()) * min(1, t / 2)),
                "errors": {"total": 0}, "p50_us": median_us, "p99_us": median_us * 6}
               for t in range(1, seconds + 1)]
    cpu = {"total": cpu_per_1000} if dovecot else {
        "gateway": cpu_per_1000 * 0.4, "service": cpu_per_1000 * 0.6, "total": cpu_per_1000}
    rss = {"total": rss_total_kib} if dovecot else {
        "gateway": rss_total_kib * 0.3, "service": rss_total_kib * 0.7, "total": rss_total_kib}
    return {
        "profile": profile, "clients": clients, "duration_s": seconds,
        "summary": {"profile": profile, "clients": clients, "tls": True,
                    "commands": commands_per_s * seconds, "commands_per_s": commands_per_s,
                    "latency_us": {"p50": median_us, "p90": median_us * 3, "p99": median_us * 6,
                                   "p999": median_us * 15, "max": median_us * 40},
                    "errors": {"no": 0, "protocol": 0, "io": errors, "timeout": 0,
                               "total": errors},
                    "latency_cdf": lognormal_cdf(median_us, 0.9)},
        "samples": samples,
        "cpu_s": {k: v * commands_per_s * seconds / 1000 for k, v in cpu.items()},
        "cpu_s_per_1000_commands": cpu,
        "rss_kib_peak": rss,
        "rss_kib_per_connection": rss_total_kib / clients,
    }


def idle(counts, kib_per_connection, base_kib, what):
    return [{"connections": n, "established": n, "memory_kib_before": base_kib,
             "memory_kib_after": base_kib + n * kib_per_connection,
             "kib_per_connection": kib_per_connection, "what": what} for n in counts]


def push(clients, append_p50, revise_p50, how):
    events = []
    for kind, p50 in (("append", append_p50), ("revise", revise_p50)):
        events.append({"kind": kind, "how": how if kind == "revise" else "IMAP APPEND",
                       "seen": clients, "missed": 0, "p50_ms": p50, "p99_ms": p50 * 4,
                       "max_ms": p50 * 7, "cdf": lognormal_cdf(p50, 0.7)})
    return {"clients": clients, "events": events}


def synthetic_results():
    """Small results of both systems with round numbers the tests check against."""
    imapd = {
        "profiles": [
            profile_run("imaptest-default", 10, 800.0, 1.25, 40_000),
            profile_run("imaptest-default", 100, 1500.0, 1.0, 60_000),
            profile_run("desktop", 100, 12.0, 2.0, 50_000),
            profile_run("desktop", 200, 20.0, 2.0, 70_000, errors=3),
        ],
        "idle": idle([100, 1000], 20.0, 9000, "gateway RSS"),
        "push": push(1000, 3.0, 4.0, "Revise API via mailbox-admin"),
        "transfer": {"size_bytes": 52428800, "append_mb_s": 120.0, "fetch_mb_s": 300.0,
                     "memory_kib_base": 9000, "memory_kib_peak": 12000},
        "login_storm": {"clients": 50, "duration_s": 10, "logins_per_s": 50.0,
                        "handshakes_per_s": 61.0, "login_p50_ms": 40.0, "login_p99_ms": 90.0,
                        "connect_p50_ms": 2.0, "cpu_s_per_1000_logins": 38.0},
    }
    dovecot = {
        "profiles": [
            profile_run("imaptest-default", 10, 1000.0, 1.0, 30_000, dovecot=True),
            profile_run("imaptest-default", 100, 1000.0, 1.0, 90_000, dovecot=True),
            profile_run("desktop", 100, 12.0, 1.5, 80_000, dovecot=True),
        ],
        "idle": idle([100, 1000], 40.0, 20000, "all Dovecot processes' RSS"),
        "push": push(1000, 2.0, 5.0, "flag change from a second IMAP session"),
        "transfer": {"size_bytes": 52428800, "append_mb_s": 100.0, "fetch_mb_s": 400.0,
                     "memory_kib_base": 20000, "memory_kib_peak": 30000},
        "login_storm": {"clients": 50, "duration_s": 10, "logins_per_s": 40.0},
    }
    return {
        "meta": {"started": "2024-05-01T10:00:00Z", "git_commit": "abc123", "smoke": False,
                 "host": {"cores": 2, "mem_total_kib": 24_000_000, "kernel": "6.1.0",
                          "cpu_model": "Test CPU"},
                 "systems": ["imapd", "dovecot"],
                 "password_hash": "argon2id, m=19456 KiB, t=2, p=1 (both systems)",
                 "notes": {"imapd": "gateway + service <script>alert(1)</script>",
                           "dovecot": "Dovecot 2.3.19, maildir"}},
        "systems": {"imapd": imapd, "dovecot": dovecot},
    }


def degraded_results():
    """imapd alone, with sections missing or failed, as a broken smoke run leaves them."""
    results = synthetic_results()
    results["meta"].update(systems=["imapd"], smoke=True)
    del results["systems"]["dovecot"]
    imapd = results["systems"]["imapd"]
    del imapd["idle"], imapd["login_storm"]
    imapd["push"] = {"error": "gateway exited with status 1"}
    imapd["profiles"] = [imapd["profiles"][0],
                         {"profile": "webmail", "clients": 5, "error": "loadgen timed out"}]
    imapd["profiles"][0]["samples"] = imapd["profiles"][0]["samples"][:2]
    return results


def realistic_results():
    """A plausible full run: five profiles at several client counts on both systems."""
    rng = random.Random(7)
    results = synthetic_results()
    shapes = {  # profile: (commands/s per client or flat rate, unpaced?, median µs)
        "imaptest-default": (None, True, 1800), "desktop": (0.35, False, 1200),
        "webmail": (2.1, False, 2500), "mobile": (0.05, False, 900),
        "ingest": (None, True, 3200)}
    for system, speed, rss_factor in (("imapd", 1.0, 1.0), ("dovecot", 1.15, 1.6)):
        runs = []
        for profile, (per_client, unpaced, median) in shapes.items():
            for clients in (10, 100, 1000):
                if unpaced:
                    rate = min(clients, 60) * 40 * speed
                else:
                    rate = clients * per_client
                runs.append(profile_run(
                    profile, clients, round(rate, 1), round(1.6 / speed, 3),
                    round((30_000 + clients * 90) * rss_factor), median_us=round(median * speed),
                    errors=2 if clients == 1000 and profile == "webmail" else 0, rng=rng,
                    dovecot=system == "dovecot"))
        results["systems"][system]["profiles"] = runs
        results["systems"][system]["idle"] = idle(
            [1000, 5000, 10000, 20000], 19.5 * rss_factor, 9000 * rss_factor,
            "gateway RSS" if system == "imapd" else "all Dovecot processes' RSS")
    results["meta"]["notes"]["imapd"] = ("gateway: 2 I/O threads, TLS 1.3; mailbox service: "
                                         "SQLite WAL on ext4, 4 workers")
    return results


# ---- Tests ----------------------------------------------------------------------------


class RenderTest(unittest.TestCase):

    def test_page_is_balanced_and_has_one_svg_per_plot(self):
        page = report.render_html(synthetic_results())
        checker = parse(page)
        self.assertEqual(checker.problems, [])
        self.assertEqual(checker.stack, [])
        # throughput ×2 profiles, latency CDF ×2 profiles, memory ×2, push ×2 kinds.
        self.assertEqual(checker.counts.get("svg"), 8)

    def test_text_is_escaped(self):
        page = report.render_html(synthetic_results())
        self.assertNotIn("<script>", page)
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", page)

    def test_headline_ratios(self):
        rows = {r.label: r for r in report.headline_rows(synthetic_results())}
        throughput = rows["imaptest-default (a login every 9 commands), 100 clients"]
        self.assertAlmostEqual(throughput.ratio, 1.5)
        self.assertEqual(report.verdict(throughput.ratio, True), "imapd better")
        self.assertAlmostEqual(
            rows["imaptest-default (a login every 9 commands), 10 clients"].ratio, 0.8)
        memory = rows["TLS + IDLE memory per connection, 1,000 connections"]
        self.assertAlmostEqual(memory.ratio, 0.5)
        self.assertEqual(report.verdict(memory.ratio, False), "imapd better")
        push_append = rows["IDLE push p99, append"]
        self.assertAlmostEqual(push_append.ratio, 12.0 / 8.0)
        self.assertEqual(report.verdict(push_append.ratio, False), "Dovecot better")
        self.assertAlmostEqual(rows["50 MB FETCH"].ratio, 0.75)
        self.assertAlmostEqual(rows["Login storm"].ratio, 1.25)
        self.assertEqual(report.verdict(1.03, True), "about even")

    def test_missing_and_failed_sections(self):
        results = degraded_results()
        page = report.render_html(results)
        checker = parse(page)
        self.assertEqual(checker.problems, [])
        self.assertEqual(checker.stack, [])
        self.assertNotIn("Dovecot</th>", page)
        self.assertNotIn("imapd ÷ Dovecot", page)
        self.assertIn("not run", page)
        self.assertIn("gateway exited with status 1", page)
        self.assertIn("loadgen timed out", page)
        self.assertIn("Smoke run", page)
        # Throughput and latency of imaptest-default only; no idle or push data.
        self.assertEqual(checker.counts.get("svg"), 2)
        rows = {r.label: r for r in report.headline_rows(results)}
        self.assertEqual(rows["IDLE push p99, append"].cells["imapd"], "failed")
        self.assertEqual(rows["Login storm"].cells["imapd"], "not run")
        self.assertIsNone(rows["Login storm"].ratio)

    def test_targets(self):
        rows = report.target_rows(synthetic_results())
        by_name = {r.target.split(":")[0]: r for r in rows}
        statuses = [r.status for r in rows]
        # No persistent-session runs: eight CPU and throughput targets not measured.
        self.assertEqual(statuses[:8], ["not measured"] * 8)
        login10, login100 = rows[8], rows[9]
        self.assertIn("bound by password hashing", login10.target)
        self.assertEqual((login10.status, login100.status), ("missed", "met"))
        self.assertIn("1.50×", login100.measured)
        append, fetch, memory, idle_row, push_row = rows[10:]
        self.assertEqual((append.status, fetch.status), ("met", "missed"))
        self.assertEqual(memory.status, "not measured")
        self.assertEqual(idle_row.status, "missed")
        self.assertIn("20.0 KiB at 1,000", idle_row.measured)
        # Push measured only unpinned (older results): the pinned target is not measured.
        self.assertEqual(push_row.status, "not measured")
        self.assertIn("unpinned", push_row.measured)
        self.assertIn("transfer (one 50 MB message, IMAPS)", by_name)

        results = synthetic_results()
        imapd = results["systems"]["imapd"]
        pinned = push(5000, 5.0, 10.0, "Revise API")
        imapd["push"] = {"clients": 5000, "pinned": {"events": pinned["events"]},
                         "unpinned": {"events": push(5000, 30.0, 40.0, "Revise API")["events"]}}
        imapd["idle"] = idle([1000], 12.0, 9000, "gateway RSS")
        imapd["transfer"]["service_memory_kib_growth"] = 4096
        rows = report.target_rows(results)
        self.assertEqual([r.status for r in rows[12:]], ["met", "met", "met"])
        self.assertIn("unpinned: append 120", rows[14].measured)
        imapd["push"]["pinned"]["events"][1]["p99_ms"] = 50.0
        self.assertEqual(report.target_rows(results)[14].status, "missed")
        imapd["push"]["pinned"] = {"error": "The read operation timed out"}
        row = report.target_rows(results)[14]
        self.assertEqual(row.status, "not measured")
        self.assertIn("pinned round failed: The read operation timed out", row.measured)
        page = report.render_html(results)
        self.assertEqual(parse(page).problems, [])
        self.assertIn("The read operation timed out", page)
        degraded = report.target_rows(degraded_results())
        self.assertEqual({r.status for r in degraded}, {"not measured"})

    def test_persistent_targets(self):
        results = synthetic_results()
        for system, rate, cpu in (("imapd", 3000.0, 0.3), ("dovecot", 1000.0, 0.7)):
            for transport in ("tls", "plain"):
                for clients in (10, 100):
                    run = profile_run("imaptest-persistent", clients, rate, cpu, 30_000,
                                      dovecot=system == "dovecot")
                    run["transport"] = transport
                    run["cpu_s"]["loadgen"] = run["cpu_s"]["total"] / 4
                    results["systems"][system]["profiles"].append(run)
        rows = report.persistent_targets(results)
        self.assertEqual(len(rows), 8)
        self.assertEqual({r.status for r in rows}, {"met"})
        self.assertIn("300 ms (gateway 120, service 180) vs 700 ms (0.43×)", rows[0].measured)
        self.assertIn("3.00×", rows[1].measured)
        self.assertIn("load generator's share of the CPU used: 20%", rows[1].measured)
        self.assertIn("plain IMAP", rows[-1].target)
        # CPU just above half of Dovecot's misses; throughput below 1.5× misses.
        results["systems"]["imapd"]["profiles"][-1]["cpu_s_per_1000_commands"]["total"] = 0.36
        results["systems"]["imapd"]["profiles"][-1]["summary"]["commands_per_s"] = 1400.0
        rows = report.persistent_targets(results)
        self.assertEqual([r.status for r in rows[-2:]], ["missed", "missed"])
        page = report.render_html(results)
        self.assertIn("imaptest-persistent over plain IMAP", page)
        rows = {r.label: r for r in report.headline_rows(results)}
        self.assertAlmostEqual(
            rows["imaptest-persistent, 10 clients, IMAPS"].ratio, 3.0)
        self.assertAlmostEqual(
            rows["imaptest-persistent, 10 clients, IMAPS, server CPU"].ratio, 0.3 / 0.7)

    def test_flame_graphs_are_inlined(self):
        results = synthetic_results()
        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "imapd", "flame"))
            with open(os.path.join(tmp, "imapd", "flame", "flame-gateway.svg"), "w") as f:
                f.write('<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>')
            results["systems"]["imapd"]["flame"] = {
                "profile": "imaptest-persistent", "clients": 10, "duration_s": 5,
                "commands": 1000, "samples": {"gateway": 10, "service": 20},
                "svg": {"gateway": "imapd/flame/flame-gateway.svg",
                        "service": "imapd/flame/flame-service.svg"},
                "top_frames": {"gateway": [["epoll_wait", 12.5]]}}
            results["systems"]["dovecot"]["flame"] = {"skipped": "perf is not installed"}
            page = report.render_html(results, base_dir=tmp)
        checker = parse(page)
        self.assertEqual((checker.problems, checker.stack), ([], []))
        self.assertIn('<div class="flame"><svg', page)
        self.assertIn("flame-service.svg (not found next to results.json)", page)
        self.assertIn("epoll_wait", page)
        self.assertIn("not measured (perf is not installed)", page)

    def test_empty_results(self):
        checker = parse(report.render_html({}))
        self.assertEqual((checker.problems, checker.stack), ([], []))
        self.assertNotIn("svg", checker.counts)

    def test_main_writes_the_report(self):
        with tempfile.TemporaryDirectory() as tmp:
            source, out = os.path.join(tmp, "results.json"), os.path.join(tmp, "report.html")
            with open(source, "w") as f:
                json.dump(synthetic_results(), f)
            self.assertEqual(report.main([source, out]), 0)
            with open(out) as f:
                self.assertIn("<svg", f.read())


class CapacityTest(unittest.TestCase):

    def test_arithmetic(self):
        self.assertAlmostEqual(report.commands_per_cpu_second(2.5), 400)
        # 10,000 users × 0.05 commands/s = 500 commands/s; 400 per core-second at 70 %.
        self.assertAlmostEqual(report.cores_needed(10_000, 0.05, 400, 0.7), 500 / 400 / 0.7)
        self.assertAlmostEqual(report.ram_needed_kib(1000, 20, 5000), 25_000)
        self.assertAlmostEqual(report.reconnect_seconds(1_000_000, 500), 2000)

    def test_rows_use_largest_clean_run(self):
        rows = {(r.system, r.profile): r for r in report.capacity(synthetic_results())}
        desktop = rows[("imapd", "desktop")]
        self.assertEqual(desktop.clients, 100)  # the 200-client run had errors
        self.assertAlmostEqual(desktop.commands_per_s_per_user, 0.12)
        self.assertAlmostEqual(desktop.commands_per_cpu_s, 500)
        self.assertAlmostEqual(desktop.commands_per_s_per_core, 350)
        self.assertAlmostEqual(desktop.kib_per_connection, 20)
        need = desktop.needs[0]
        self.assertEqual(need.users, 10_000)
        self.assertAlmostEqual(need.cores, 10_000 * 0.12 / 500 / 0.7)
        self.assertAlmostEqual(need.ram_kib, 10_000 * 20 + 50_000)
        self.assertAlmostEqual(desktop.needs[2].ram_kib, 1_000_000 * 20 + 50_000)

        unpaced = rows[("imapd", "imaptest-default")]
        self.assertFalse(unpaced.paced)
        self.assertEqual(unpaced.clients, 100)
        self.assertAlmostEqual(unpaced.commands_per_cpu_s, 1000)
        self.assertIsNone(unpaced.commands_per_s_per_user)
        self.assertIsNone(unpaced.needs[0].cores)
        self.assertAlmostEqual(unpaced.needs[0].ram_kib, 10_000 * 20 + 60_000)

        dovecot = rows[("dovecot", "desktop")]
        self.assertAlmostEqual(dovecot.needs[1].ram_kib, 100_000 * 40 + 80_000)

    def test_service_memory_is_added_when_measured(self):
        results = synthetic_results()
        results["systems"]["imapd"]["idle"][-1]["service_kib_per_connection"] = 5.0
        rows = {(r.system, r.profile): r for r in report.capacity(results, users=(1000,))}
        self.assertAlmostEqual(rows[("imapd", "desktop")].needs[0].ram_kib,
                               1000 * 25 + 50_000)

    def test_every_run_with_errors(self):
        results = synthetic_results()
        for run in results["systems"]["imapd"]["profiles"]:
            run["summary"]["errors"]["total"] = 1
        rows = {(r.system, r.profile): r for r in report.capacity(results)}
        self.assertEqual(rows[("imapd", "desktop")].note, "every run failed or had errors")
        self.assertEqual(rows[("imapd", "desktop")].needs, [])


class ChartTest(unittest.TestCase):

    def test_ticks(self):
        self.assertEqual(report.linear_ticks(0, 97), [0, 20, 40, 60, 80, 100])
        self.assertEqual(report.linear_ticks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1.0])
        self.assertEqual(report.log_ticks(0.3, 40),
                         [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100])
        self.assertEqual(report.log_ticks(0.5, 20_000), [0.1, 1, 10, 100, 1000, 10_000, 100_000])

    def test_chart_without_points_says_so(self):
        figure = report.line_chart("t", [report.Series("a", [], "#000")], "x", "y")
        self.assertIn("no data", figure)
        self.assertNotIn("<svg", figure)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--sample":
        with open(sys.argv[2], "w", encoding="utf-8") as out:
            out.write(report.render_html(realistic_results()))
        sys.exit(0)
    unittest.main()
