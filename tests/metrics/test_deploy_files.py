"""The example Grafana dashboard and the Prometheus alert rules: valid, and every metric
they name is one /metrics exposes."""

import json
import re
import shutil
import subprocess

import pytest
import yaml
from django.utils import timezone

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\bcargohold_[a-z_]+\b")

pytestmark = pytest.mark.django_db


@pytest.fixture
def exposed(scrape):
    """Every metric name a scrape can show: data seeded so that every family has samples."""
    from jobs.models import Job
    from tests.metrics.conftest import backup_row
    from hosts.models import default_host
    from volumes.models import EngineStatus, Volume

    now = timezone.now()
    Volume.objects.create(name="metrics-vol", size_bytes=10)
    backup_row(volume_name="metrics-vol", status="succeeded", finished_at=now, started_at=now, size_bytes=5)
    Job.objects.create(kind="backup", status="running", started_at=now)
    Job.objects.create(kind="backup", status="failed", started_at=now, finished_at=now, end_handled=True)
    EngineStatus.objects.update_or_create(host=default_host(), defaults={"last_success_at": now})
    return {name for name, _ in scrape()}


def _exprs_of_dashboard() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "cargohold-dashboard.json").read_text())
    assert dashboard["title"] and dashboard["panels"]
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _rules() -> list[dict]:
    document = yaml.safe_load((DEPLOY / "prometheus" / "cargohold-alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_dashboard_names_only_exposed_metrics(exposed):
    exprs = _exprs_of_dashboard()
    named = {name for expr in exprs for name in METRIC.findall(expr)}
    assert len(named) >= 8
    assert named <= exposed, f"unknown metrics in the dashboard: {named - exposed}"


def test_alert_rules_parse_and_name_only_exposed_metrics(exposed):
    rules = _rules()
    assert {r["alert"] for r in rules} == {"CargoholdBackupTooOld", "CargoholdJobsFailing"}
    for rule in rules:
        assert rule["labels"]["severity"] and rule["annotations"]["summary"]
        named = set(METRIC.findall(rule["expr"]))
        assert named and named <= exposed, f"{rule['alert']}: unknown metrics {named - exposed}"


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed (apt-get install prometheus)")
def test_promtool_accepts_the_rules_and_the_example_config(tmp_path):
    rules = subprocess.run(["promtool", "check", "rules", str(DEPLOY / "prometheus" / "cargohold-alerts.yml")],
                           capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # The example config reads the token from a file, which promtool wants to exist.
    token_file = tmp_path / "token"
    token_file.write_text("x")
    config = (DEPLOY / "prometheus" / "prometheus.example.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(config.replace("/etc/prometheus/cargohold-metrics-token", str(token_file)))
    shutil.copy(DEPLOY / "prometheus" / "cargohold-alerts.yml", tmp_path)
    checked = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
