"""deploy/grafana/swimctl.json and deploy/prometheus/alerts.yml name only metrics a live hub
exports, and the rules pass `promtool check rules`.

Two kinds of names are allowed that a plain hub does not export:
- `swim_broker_up`, `swim_broker_read_lag_seconds` and `swim_feed_leader`: exported only by a
  hub started with `--broker` (hub/stats.BrokerState set); the test sets one and sees them;
- `up`: recorded by Prometheus itself for every target it scrapes (the hub-down alert).

promtool comes from the Debian package `prometheus`. Installing the package would start a
Prometheus server on the test machine, so the test fetches the package with apt-get and
extracts only promtool, kept in the virtual environment for later runs. Without it the test
skips, and fails under `CI`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from swimctl.hub.stats import BrokerState
from tests.conftest import StartHub, recorded_feed, request

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "swimctl.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
BROKER_ONLY = {"swim_broker_up", "swim_broker_read_lag_seconds", "swim_feed_leader"}
PROMETHEUS_OWN = {"up"}
NAME = re.compile(r"\b(swim_[a-z0-9_]+)")


def strings(node: Any) -> list[str]:
    """Every PromQL text in a dashboard: panel targets and template variable queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition", "query") and isinstance(value, str):
                found.append(value)
            else:
                found += strings(value)
    elif isinstance(node, list):
        for item in node:
            found += strings(item)
    return found


def named_metrics() -> dict[str, set[str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = strings(dashboard)
    assert len(queries) > 30, "the dashboard lost its panels"
    alerts = ALERTS.read_text(encoding="utf-8")
    expressions = re.findall(r"^\s*expr: (.*(?:\n\s{10,}\S.*)*)", alerts, re.M)
    assert len(expressions) >= 5, "the alert rules are missing"
    return {
        "dashboard": {n for q in queries for n in NAME.findall(q)},
        "alerts": {n for e in expressions for n in NAME.findall(e)}
        | ({"up"} if re.search(r"\bup\{", alerts) else set()),
    }


def exported(text: str) -> set[str]:
    """Names in Prometheus text: samples and TYPE lines (a family may have no sample yet)."""
    names = set(re.findall(r"^([a-z_][a-z0-9_]*)(?:\{| )", text, re.M))
    names |= set(re.findall(r"^# TYPE ([a-z_][a-z0-9_]*) ", text, re.M))
    return names


async def scrape(url: str) -> str:
    response = await trio.to_thread.run_sync(lambda: httpx.get(f"{url}/metrics", timeout=5))
    assert response.status_code == 200
    return response.text


async def test_every_metric_the_deploy_files_name_is_exported(start_hub: StartHub,
                                                              tmp_path: Path) -> None:
    h = await start_hub(options={"metrics_port": 0, "feed": recorded_feed(tmp_path / "feed"),
                                 "feed_interval": 0.0})
    base = h.handle.extras["metrics_url"]
    with trio.fail_after(30):
        while h.hub.stats.feed_cycles < 1:
            await trio.sleep(0.05)
    async with h.connect("partner") as ws:
        await request(ws, {"action": "subscribe", "channels": ["flight.*"]})
        plain = exported(await scrape(base))
        names = named_metrics()
        for where, wanted in names.items():
            missing = wanted - plain - BROKER_ONLY - PROMETHEUS_OWN
            assert not missing, f"{where} names metrics a live hub does not export: {missing}"
        assert names["alerts"] >= {"up", "swim_feed_age_seconds", "swim_slow_consumers_total",
                                   "swim_keystore_up", "swim_broker_read_lag_seconds"}
        assert not plain & BROKER_ONLY  # only with a broker
        h.hub.stats.broker = BrokerState(up=True, read_lag_seconds=0.02, leader=True)
        with_broker = await scrape(base)
    assert exported(with_broker) >= BROKER_ONLY
    assert "swim_feed_leader 1.0" in with_broker and "swim_broker_up 1.0" in with_broker


def promtool(cache: Path) -> str | None:
    """promtool on PATH, or extracted from the Debian package into `cache` (fetched with
    apt-get the first time)."""
    found = shutil.which("promtool")
    if found:
        return found
    local = cache / "usr" / "bin" / "promtool"
    if local.exists():
        return str(local)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return None
    work = cache.parent / "promtool-download"
    work.mkdir(parents=True, exist_ok=True)

    def download() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["apt-get", "download", "-qq", "prometheus"], cwd=work,
                              capture_output=True, text=True, timeout=300, check=False)

    fetched = download()
    if fetched.returncode != 0 and os.geteuid() == 0:  # stale package lists: refresh once
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300,
                       check=False)
        fetched = download()
    debs = sorted(work.glob("prometheus_*.deb"))
    if fetched.returncode != 0 or not debs:
        return None
    unpacked = work / "unpacked"
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(unpacked)], check=True, timeout=120)
    local.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(unpacked / "usr" / "bin" / "promtool", local)  # the rest is not needed
    shutil.rmtree(work, ignore_errors=True)
    return str(local)


def test_the_alert_rules_pass_promtool(tmp_path_factory: pytest.TempPathFactory) -> None:
    in_venv = sys.prefix != sys.base_prefix
    cache = Path(sys.prefix) / "promtool" if in_venv else \
        tmp_path_factory.mktemp("promtool")
    tool = promtool(cache)
    if tool is None:
        reason = "promtool is not installed and the Debian package prometheus cannot be fetched"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {reason}", pytrace=False)
        pytest.skip(reason)
    checked = subprocess.run([tool, "check", "rules", str(ALERTS)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout + checked.stderr
