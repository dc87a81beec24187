"""`koinonia-infra monitor` on the command line: formats, `--check` exit codes, `--watch`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from fake_render import API_2, KEY, NOW, Scenario, descriptor
from typer.testing import CliRunner

from koinonia_infra.cli import app
from koinonia_infra.monitor import run as monitor_run
from koinonia_infra.monitor.collect import collect_monitor
from koinonia_infra.monitor.model import MonitorReport
from koinonia_infra.monitor.render import BARS
from koinonia_infra.targets import DeploymentSource

runner = CliRunner()


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    path = tmp_path / "outputs.json"
    descriptor().write(path)
    return path


def serve(
    monkeypatch: pytest.MonkeyPatch,
    scenario: Scenario,
    sources: list[DeploymentSource] | None = None,
) -> list[timedelta]:
    """`run_monitor` reads `scenario` instead of the network; the windows asked are recorded,
    and the deployments in `sources`."""
    windows: list[timedelta] = []

    def fake(where: DeploymentSource, since: timedelta) -> MonitorReport:
        windows.append(since)
        if sources is not None:
            sources.append(where)
        with scenario.client() as client:
            return collect_monitor(descriptor(), client, since=since, now=NOW)

    monkeypatch.setattr(monitor_run, "run_monitor", fake)
    return windows


def test_check_exits_1_naming_rule_target_value_and_threshold(
    monkeypatch: pytest.MonkeyPatch, outputs: Path
) -> None:
    serve(monkeypatch, Scenario(suspended={API_2}))
    result = runner.invoke(app, ["monitor", "--outputs", str(outputs), "--check"])
    assert result.exit_code == 1, result.output
    assert (
        "1 alert rule(s) fired: instance down on api-2 (koinonia-sms-backend-2): suspended "
        "(threshold running)" in result.output
    )


def test_check_exits_0_when_all_is_well_and_without_check_a_rule_does_not_fail(
    monkeypatch: pytest.MonkeyPatch, outputs: Path
) -> None:
    serve(monkeypatch, Scenario())
    ok = runner.invoke(app, ["monitor", "--outputs", str(outputs), "--check"])
    assert ok.exit_code == 0, ok.output
    assert "no alert rule fired" in ok.output
    # One row per service, its sparklines included, even in a 80-column pipe.
    [row] = [line for line in ok.stdout.splitlines() if "api-1" in line]
    assert "40 % (peak 40 %)" in row
    assert BARS[3] * 5 in row  # a flat 40 % CPU line, scaled to 100 %
    serve(monkeypatch, Scenario(suspended={API_2}))
    shown = runner.invoke(app, ["monitor", "--outputs", str(outputs)])
    assert shown.exit_code == 0, shown.output
    assert "instance down on api-2" in shown.output


def test_json_and_markdown_formats(monkeypatch: pytest.MonkeyPatch, outputs: Path) -> None:
    windows = serve(monkeypatch, Scenario(suspended={API_2}))
    result = runner.invoke(
        app, ["monitor", "--outputs", str(outputs), "--format", "json", "--since", "15m"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["fired"] is True
    assert [t["role"] for t in data["targets"]] == ["api-1", "api-2", "edge"]
    assert windows == [timedelta(minutes=15)]
    md = runner.invoke(app, ["monitor", "--outputs", str(outputs), "--format", "markdown"])
    assert md.stdout.startswith("# koinonia monitor\n")
    assert "## Alerts" in md.stdout


def test_short_stack_and_format_options(monkeypatch: pytest.MonkeyPatch) -> None:
    sources: list[DeploymentSource] = []
    serve(monkeypatch, Scenario(), sources)
    result = runner.invoke(app, ["monitor", "-s", "staging", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert [t["role"] for t in json.loads(result.stdout)["targets"]] == ["api-1", "api-2", "edge"]
    assert sources == [DeploymentSource(stack="staging")]


def test_report_file_is_the_markdown(
    monkeypatch: pytest.MonkeyPatch, outputs: Path, tmp_path: Path
) -> None:
    serve(monkeypatch, Scenario())
    report = tmp_path / "monitor.md"
    result = runner.invoke(app, ["monitor", "--outputs", str(outputs), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert report.read_text(encoding="utf-8").startswith("# koinonia monitor")


def test_bad_since_is_a_usage_error(outputs: Path) -> None:
    result = runner.invoke(app, ["monitor", "--outputs", str(outputs), "--since", "soon"])
    assert result.exit_code == 2
    assert "--since 'soon': expected a duration" in result.output


def test_no_api_key_is_an_environment_error(monkeypatch: pytest.MonkeyPatch, outputs: Path) -> None:
    for var in ("RENDER_API_KEY", "RENDER_APIKEY"):
        monkeypatch.delenv(var, raising=False)
    result = runner.invoke(app, ["monitor", "--outputs", str(outputs)])
    assert result.exit_code == 3
    assert "monitor needs the Render API: set RENDER_API_KEY" in result.output


def test_watch_refreshes_the_requested_number_of_times(
    monkeypatch: pytest.MonkeyPatch, outputs: Path
) -> None:
    windows = serve(monkeypatch, Scenario())
    monkeypatch.setattr("koinonia_infra.monitor.watch.pause", lambda _s: None)
    result = runner.invoke(
        app, ["monitor", "--outputs", str(outputs), "--watch", "--iterations", "3"]
    )
    assert result.exit_code == 0, result.output
    assert len(windows) == 3
    assert "koinonia monitor" in result.output


def test_watch_with_check_fails_on_the_last_screen(
    monkeypatch: pytest.MonkeyPatch, outputs: Path
) -> None:
    serve(monkeypatch, Scenario(suspended={API_2}))
    monkeypatch.setattr("koinonia_infra.monitor.watch.pause", lambda _s: None)
    result = runner.invoke(
        app, ["monitor", "--outputs", str(outputs), "--watch", "--iterations", "2", "--check"]
    )
    assert result.exit_code == 1
    assert "instance down on api-2" in result.output


def test_the_key_never_reaches_the_output(monkeypatch: pytest.MonkeyPatch, outputs: Path) -> None:
    monkeypatch.setenv("RENDER_API_KEY", KEY)
    serve(monkeypatch, Scenario())
    for fmt in ("table", "json", "markdown"):
        result = runner.invoke(app, ["monitor", "--outputs", str(outputs), "--format", fmt])
        assert KEY not in result.output


def test_rules_come_from_the_stack_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from koinonia_infra.monitor.run import rules_for

    (tmp_path / "Pulumi.yaml").write_text("name: koinonia\nruntime: python\n")
    (tmp_path / "Pulumi.staging.yaml").write_text(
        "config:\n  koinonia:ownerId: tea-testowner0001\n"
        "  koinonia:monitor:\n    cpuPercent: 60\n  koinonia:verify:\n    p95Ms: 400\n"
    )
    monkeypatch.chdir(tmp_path)
    monitor, verify = rules_for(DeploymentSource(stack="staging"))
    assert monitor.cpu_percent == 60
    assert verify.p95_ms == 400
    defaults, _ = rules_for(DeploymentSource(target="sandbox"))
    assert defaults.cpu_percent == 80


def test_watch_is_a_screen_not_a_json_stream(outputs: Path) -> None:
    result = runner.invoke(app, ["monitor", "--outputs", str(outputs), "--watch", "-f", "json"])
    assert result.exit_code == 2
    assert "--watch redraws the screen; --format json goes without it" in result.output
