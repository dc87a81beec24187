"""Error-level log lines over an operation's window: the drill's log check against the fake
Render API (the sandbox's real log lines are in test_logs_sandbox.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ops_fakes import World

from koinonia_infra.ops.drill import LOG_CHECK, DrillReport, run_failover_drill
from koinonia_infra.ops.logs import FIRST_LINES, LogScan, log_check, scan_errors
from koinonia_infra.ops.render import drill_markdown
from koinonia_infra.ops.timing import sandbox_timing


def entry(n: int, resource: str, message: str, level: str = "error", kind: str = "app") -> Any:
    """A log entry in Render's shape (openapi.yml `Logs200Response`: id, message, timestamp,
    labels name/value with resource, instance, level, type)."""
    labels = [("resource", resource), ("instance", f"{resource}-x"), ("level", level),
              ("type", kind)]  # fmt: skip
    return {
        "id": f"log-{n}",
        "message": message,
        "timestamp": f"2026-01-01T12:00:{n:02d}Z",
        "labels": [{"name": k, "value": v} for k, v in labels],
    }


def drill(world: World) -> DrillReport:
    return run_failover_drill(
        world.descriptor(),
        world.client(),
        instance=1,
        duration=2.0,
        settle=0.5,
        timing=sandbox_timing("fast"),
        start_traffic=world.start_traffic,
        probe=world.probe,
        sleep=world.sleep,
    )


def log_check_of(report: DrillReport) -> Any:
    return next(c for c in report.checks if c.name == LOG_CHECK)


def test_a_drill_without_error_lines_passes_its_log_check() -> None:
    world = World()
    world.log_entries = [entry(1, "srv-2", "GET /health 200", level="info")]
    report = drill(world)
    assert report.outcome == "passed", report.error
    check = log_check_of(report)
    assert check.passed is True
    assert check.measured == "no error lines"
    # One read of Render's /logs: both instances, error level only, the drill's window.
    (query,) = world.log_queries
    assert query["ownerId"] == "tea-fake"
    assert query.get_list("resource") == ["srv-1", "srv-2"]
    assert query.get_list("level") == ["error"]
    assert query["direction"] == "forward"
    start = datetime.fromisoformat(query["startTime"])
    end = datetime.fromisoformat(query["endTime"])
    assert start <= end <= datetime.now(UTC)


def test_an_error_line_during_the_drill_fails_it_naming_the_line_without_its_secret() -> None:
    world = World()
    world.log_entries = [
        entry(1, "srv-2", "Error: connect ECONNREFUSED postgres://app:hunter22@db:5432/app"),
        entry(2, "srv-1", "request failed", level="warning"),
    ]
    report = drill(world)
    assert report.outcome == "failed"
    assert report.exit_code == 1
    check = log_check_of(report)
    assert check.passed is False
    assert check.measured == (
        "1 error line(s): api-2: Error: connect ECONNREFUSED postgres://app:[secret]@db:5432/app"
    )
    assert "hunter22" not in report.model_dump_json()
    assert report.error is not None
    assert LOG_CHECK in report.error
    markdown = drill_markdown(report)
    assert "hunter22" not in markdown
    assert "no errors in the instances" in markdown
    assert report.to_json()["logs"]["errorCount"] == 1


def test_many_error_lines_show_the_first_few_one_line_each() -> None:
    world = World()
    world.log_entries = [entry(i, "srv-1", f"boom {i}\nTraceback line") for i in range(12)]
    report = drill(world)
    assert report.logs is not None
    assert report.logs.error_count == 12
    assert len(report.logs.first) == FIRST_LINES
    assert report.logs.first[0] == "api-1: boom 0\\nTraceback line"
    assert log_check_of(report).measured.endswith(f"(+{12 - FIRST_LINES} more)")


def test_unreadable_logs_are_not_a_pass() -> None:
    world = World()
    client = world.client()
    scan = scan_errors(
        client,
        {"srv-9": "api-9"},  # the fake API knows no such service: 404
        start=datetime.now(UTC),
        end=datetime.now(UTC),
    )
    assert scan.read is False
    check = log_check("no errors", scan)
    assert check.passed is None
    assert check.measured.startswith("not read: ")


def test_build_logs_are_asked_for_by_type() -> None:
    world = World()
    world.log_entries = [
        entry(1, "srv-1", "npm ERR! missing script: build", kind="build"),
        entry(2, "srv-1", "Error: app crashed", kind="app"),
    ]
    now = datetime.now(UTC)
    scan = scan_errors(world.client(), {"srv-1": "api-1"}, start=now, end=now, types=["build"])
    assert isinstance(scan, LogScan)
    assert scan.first == ["api-1: npm ERR! missing script: build"]
    assert world.log_queries[-1].get_list("type") == ["build"]
    assert log_check("no errors in build logs", scan).threshold == (
        "0 error-level lines of type build"
    )


def test_a_rollout_reports_the_error_lines_of_its_window() -> None:
    from koinonia_infra.ops.rollout import LOG_CHECK as ROLLOUT_LOG_CHECK
    from koinonia_infra.ops.rollout import run_rollout

    world = World()
    world.log_entries = [entry(1, "srv-1", "FATAL: could not connect to the SMS provider")]
    report = run_rollout(
        world.descriptor(),
        world.client(),
        order=[2, 1],
        start_traffic=world.start_traffic,
        probe=world.probe,
        sleep=world.sleep,
        settle=0.5,
    )
    check = next(c for c in report.checks if c.name == ROLLOUT_LOG_CHECK)
    assert check.passed is False
    assert check.measured == "1 error line(s): api-1: FATAL: could not connect to the SMS provider"
    assert report.outcome == "failed"
    assert world.log_queries[-1].get_list("resource") == ["srv-1", "srv-2"]


def test_the_reports_list_each_error_line_as_text() -> None:
    from rich.console import Console

    from koinonia_infra.ops.render import drill_renderable

    world = World()
    world.log_entries = [
        entry(1, "srv-2", "Error: [bold]not markup[/] - [x] **PASSED**"),
        entry(2, "srv-1", "Error: second\x1b[31m"),
    ]
    report = drill(world)
    markdown = drill_markdown(report)
    assert "## Error lines in the instances' logs (2)" in markdown
    assert "- api-2: Error: \\[bold\\]not markup\\[/\\] - \\[x\\] \\*\\*PASSED\\*\\*" in markdown
    assert "- api-1: Error: second\\\\x1b\\[31m" in markdown
    console = Console(record=True, width=200, color_system=None)
    console.print(drill_renderable(report))
    text = console.export_text()
    assert "error line: api-2: Error: [bold]not markup[/] - [x] **PASSED**" in text
    assert "error line: api-1: Error: second\\x1b[31m" in text
