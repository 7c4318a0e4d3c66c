#!/usr/bin/env python3
"""Checks a bench suite's outputs are complete and consistent (used by the smoke test):
every system has every scenario it was asked for, without an error; counts are
positive where the scenario did something; percentiles are ordered; the report is an
HTML page with its plots. Checks shape only, never speed.

Usage: check_results.py RESULTS.json REPORT.html
"""

import html.parser
import json
import sys


def check_profiles(rows, system):
    assert rows, "%s: no profile runs" % system
    for row in rows:
        name = "%s %s@%d" % (system, row["profile"], row["clients"])
        summary = row["summary"]
        assert summary["errors"]["protocol"] == 0, (name, summary["errors"])
        assert summary["errors"]["timeout"] == 0, (name, summary["errors"])
        lat = summary["latency_us"]
        assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"], (name, lat)
        fractions = [f for _, f in summary["latency_cdf"]]
        assert fractions == sorted(fractions), (name, summary["latency_cdf"])
        assert row["samples"], name
        assert row["cpu_s"]["total"] >= 0, name
        assert row["cpu_s"]["loadgen"] >= 0, name
        assert row.get("transport", "tls") in ("tls", "plain"), name
        if row["profile"] in ("imaptest-default", "imaptest-persistent"):
            assert summary["commands"] > 0, name
            assert row["cpu_s_per_1000_commands"]["total"] is not None, name
    transports = {(row["profile"], row.get("transport", "tls")) for row in rows}
    assert ("imaptest-persistent", "plain") in transports, (system, sorted(transports))


def check_flame(flame, system):
    """perf may be missing or refused on a machine; then the scenario says why."""
    if "skipped" in flame:
        assert flame["skipped"], system
        return
    assert flame["commands"] > 0, (system, flame)
    assert flame["svg"], (system, flame)
    for role, count in flame["samples"].items():
        assert count > 0 and flame["top_frames"][role], (system, role)


def check_idle(rows, system):
    for row in rows:
        assert row["established"] == row["connections"], (system, row)
        assert row["kib_per_connection"] is not None, (system, row)


def check_push(push, system):
    runs = [push[k]["events"] for k in ("pinned", "unpinned") if "events" in push.get(k, {})]
    runs = runs or [push["events"]]
    for events in runs:
        check_push_events(events, push["clients"], system)


def check_push_events(events, clients, system):
    kinds = [event["kind"] for event in events]
    assert kinds == ["append", "revise"], (system, kinds)
    for event in events:
        assert event.get("not_idling", 0) == 0, (
            system, "%d clients never entered IDLE (see push-*/loadgen.log)" % event["not_idling"])
        assert event["seen"] == clients and event["missed"] == 0, (system, event)
        assert 0 <= event["p50_ms"] <= event["p99_ms"] <= event["max_ms"], (system, event)


def check_transfer(transfer, system):
    assert transfer["appends"] >= 1 and transfer["fetches"] >= 1, (system, transfer)
    assert transfer["append_mb_s"] > 0 and transfer["fetch_mb_s"] > 0, (system, transfer)
    assert transfer["memory_kib_peak"] >= transfer["memory_kib_base"] > 0, (system, transfer)


def check_login(login, system):
    assert login["logins_per_s"] and login["logins_per_s"] > 0, (system, login)
    assert login["errors"]["total"] == 0, (system, login)


CHECKS = {"profiles": check_profiles, "flame": check_flame, "idle": check_idle, "push": check_push,
          "transfer": check_transfer, "login_storm": check_login}


class TagBalance(html.parser.HTMLParser):
    VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack = []
        self.svgs = 0

    def handle_starttag(self, tag, attrs):
        if tag == "svg":
            self.svgs += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, "unbalanced </%s> after %s" % (tag, self.stack[-3:])
        self.stack.pop()


def main(results_path, report_path):
    with open(results_path) as f:
        results = json.load(f)
    systems = results["meta"]["systems"]
    assert "imapd" in systems, systems
    for system in systems:
        section = results["systems"][system]
        for scenario in results["meta"]["scenarios"]:
            value = section.get(scenario)
            assert value is not None, "%s: %s missing" % (system, scenario)
            assert not (isinstance(value, dict) and "error" in value), (system, scenario, value)
            CHECKS[scenario](value, system)
    with open(report_path) as f:
        page = f.read()
    parser = TagBalance()
    parser.feed(page)
    parser.close()
    assert parser.svgs >= 3, "expected the report's plots, found %d <svg>" % parser.svgs
    print("bench outputs check: %s, scenarios %s, report with %d plots"
          % (", ".join(systems), ", ".join(results["meta"]["scenarios"]), parser.svgs))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
