"""`up` reads the instances' error-level log lines over its own window and reports them."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from engine_fakes import FakeEngine, FakeUI, Recorder, plan_of

from koinonia_infra.deploy.types import Seams, UpReport
from koinonia_infra.deploy.up import run_up
from koinonia_infra.descriptor import Descriptor
from koinonia_infra.ops.logs import LogScan

CHANGE = plan_of(("update", "render:services:WebService", "api-2"))


class Logs:
    def __init__(self, scan: dict[str, object]) -> None:
        self.scan = scan
        self.windows: list[tuple[datetime, datetime]] = []

    def __call__(self, descriptor: Descriptor, start: datetime, end: datetime) -> LogScan:
        self.windows.append((start, end))
        return LogScan.model_validate({"start": start, "end": end, **self.scan})


def seams_with(rec: Recorder, ui: FakeUI, logs: Logs) -> Seams:
    return replace(rec.seams(ui), error_logs=logs)


def up(engine: Any, seams: Seams) -> UpReport:
    return run_up(engine, seams, yes=True)


def test_up_reports_each_error_line_of_its_window() -> None:
    engine, ui, rec = FakeEngine(CHANGE), FakeUI(interactive=False), Recorder()
    logs = Logs({"read": True, "error_count": 2,
                 "first": ["api-2: Error: boom", "api-1: TypeError: x is undefined"]})  # fmt: skip
    before = datetime.now().astimezone()
    report = up(engine, seams_with(rec, ui, logs))
    ((start, end),) = logs.windows
    assert before <= start <= end
    assert ("warning", "2 error line(s) in the instances' logs during the update") in ui.messages
    assert ("warning", "  api-2: Error: boom") in ui.messages
    assert ("warning", "  api-1: TypeError: x is undefined") in ui.messages
    assert report.to_json()["logs"]["errorCount"] == 2
    # They inform; the deploys and verify decide.
    assert report.verify is not None
    assert report.verify.passed


def test_up_without_error_lines_says_so() -> None:
    engine, ui, rec = FakeEngine(CHANGE), FakeUI(interactive=False), Recorder()
    up(engine, seams_with(rec, ui, Logs({"read": True})))
    assert ("success", "no error lines in the instances' logs during the update") in ui.messages


def test_up_says_when_the_logs_could_not_be_read() -> None:
    engine, ui, rec = FakeEngine(CHANGE), FakeUI(interactive=False), Recorder()
    up(engine, seams_with(rec, ui, Logs({"read": False, "reason": "no Render API key"})))
    assert (
        "warning",
        "instance logs during the update not read: no Render API key",
    ) in ui.messages


def test_an_up_without_changes_reads_no_logs() -> None:
    engine, ui, rec = FakeEngine(plan_of()), FakeUI(interactive=False), Recorder()
    logs = Logs({"read": True})
    up(engine, seams_with(rec, ui, logs))
    assert logs.windows == []
