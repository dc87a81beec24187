"""`verify --capacity`: the ramp, the knee, the ceilings, the single-instance comparison (the
suspended instances always resumed) and the plot, against a scripted load generator and a fake
Render API; the CLI's confirmation and ceilings against local servers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from verify_servers import FakeDeployment

from koinonia_infra.cli import app
from koinonia_infra.descriptor import Descriptor, parse_descriptor
from koinonia_infra.measure.health import HealthResult
from koinonia_infra.measure.load import BurstResult
from koinonia_infra.measure.samples import Sample
from koinonia_infra.ops.timing import sandbox_timing
from koinonia_infra.verify.capacity import (
    CapacityReport,
    markdown,
    plot,
    ramp,
    run_capacity,
    summary_lines,
)

P95 = 100.0


def burst(concurrency: int, p95: float, rps: float, failed: int = 0) -> BurstResult:
    """A step's result: 100 samples whose 95th percentile is `p95` ms."""
    samples = [Sample(0.0, p95 / 2, 200, None, None) for _ in range(90)]
    samples += [Sample(0.0, p95, 200, None, None) for _ in range(10 - failed)]
    samples += [Sample(0.0, p95, None, None, "connection reset") for _ in range(failed)]
    return BurstResult("http://edge/health", samples, len(samples) / rps, concurrency)


@dataclass
class Load:
    """p95 grows with concurrency; one instance answers half as fast as two (or per script)."""

    instances: int = 2
    per_instance_ms: float = 4.0
    calls: list[tuple[str, int, int]] = field(default_factory=list)
    fail_at: int | None = None
    interrupt_at: tuple[int, int] | None = None  # (instances, concurrency)

    def __call__(self, url: str, requests: int, concurrency: int, deadline: float) -> BurstResult:
        self.calls.append((url, requests, concurrency))
        if self.interrupt_at == (self.instances, concurrency):
            raise KeyboardInterrupt
        if self.fail_at is not None and concurrency >= self.fail_at:
            return burst(concurrency, 10.0, 500.0, failed=1)
        p95 = concurrency * self.per_instance_ms / self.instances
        return burst(concurrency, p95, 1000.0 * concurrency / p95)


def test_the_ramp_stops_at_the_first_step_past_the_threshold() -> None:
    result = ramp("http://edge/health", label="2 instances", instances=2, p95_ms=P95,
                  max_concurrency=1024, max_seconds=60, measure=Load())  # fmt: skip
    # p95 = 2 ms x concurrency: 48 → 96 ms is within, 64 → 128 ms is not.
    assert [s.concurrency for s in result.steps] == [1, 2, 4, 8, 12, 16, 24, 32, 48, 64]
    knee = result.knee
    assert knee is not None
    assert knee.concurrency == 48
    assert result.knee_found is True
    assert result.stopped == "p95 128.0 ms past 100 ms at concurrency 64"


def test_the_ramp_stops_at_the_first_error() -> None:
    load = Load(fail_at=8)
    result = ramp("http://edge/health", label="2 instances", instances=2, p95_ms=P95,
                  max_concurrency=64, max_seconds=60, measure=load)  # fmt: skip
    assert [c for _, _, c in load.calls] == [1, 2, 4, 8]
    assert result.knee is not None
    assert result.knee.concurrency == 4
    assert result.stopped == "1 failed at concurrency 8: connection reset"


def test_the_concurrency_ceiling_bounds_the_ramp_and_the_knee_is_a_lower_bound() -> None:
    load = Load()
    result = ramp("http://edge/health", label="2 instances", instances=2, p95_ms=P95,
                  max_concurrency=10, max_seconds=60, measure=load)  # fmt: skip
    assert [c for _, _, c in load.calls] == [1, 2, 4, 8, 10]
    assert result.knee is not None
    assert result.knee.concurrency == 10
    assert result.knee_found is False
    assert result.stopped == "concurrency ceiling (10) reached within the threshold"


def test_the_duration_ceiling_ends_the_ramp() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    def slow(url: str, requests: int, concurrency: int, deadline: float) -> BurstResult:
        now[0] += 10.0  # every step takes 10 s
        return Load()(url, requests, concurrency, deadline)

    result = ramp("http://edge/health", label="2", instances=2, p95_ms=P95, max_concurrency=1024,
                  max_seconds=25, measure=slow, clock=clock)  # fmt: skip
    assert [s.concurrency for s in result.steps] == [1, 2, 4]
    assert result.stopped == "duration ceiling (25 s) reached"


def test_each_step_runs_about_step_seconds_at_the_previous_rate() -> None:
    load = Load()
    ramp("http://edge/health", label="2", instances=2, p95_ms=P95, max_concurrency=4,
         max_seconds=60, step_seconds=2.0, measure=load)  # fmt: skip
    # First step: the minimum; then 2 s at the best rate so far (500 req/s at concurrency 1).
    assert [r for _, r, _ in load.calls] == [100, 1000, 1000]


# ---- --compare-single over a fake Render API -------------------------------------------------


class Service:
    def __init__(self, suspended: bool) -> None:
        self.is_suspended = suspended


class FakeRender:
    def __init__(self, load: Load) -> None:
        self.load = load
        self.suspended: set[str] = set()
        self.calls: list[str] = []

    def get_service(self, sid: str) -> Service:
        return Service(sid in self.suspended)

    def latest_deploy(self, sid: str) -> None:
        return None

    def suspend(self, sid: str) -> None:
        self.calls.append(f"suspend {sid}")
        self.suspended.add(sid)
        self.load.instances = 1

    def resume(self, sid: str) -> None:
        self.calls.append(f"resume {sid}")
        self.suspended.discard(sid)
        self.load.instances = 2


def descriptor() -> Descriptor:
    return parse_descriptor(
        {
            "edgeUrl": "http://edge.test",
            "instances": [
                {
                    "number": n,
                    "name": f"svc-{n}",
                    "serviceId": f"srv-{n}",
                    "url": f"http://api-{n}.test",
                    "privateAddress": f"svc-{n}:8080",
                }
                for n in (1, 2)
            ],
            "sandboxTiming": "fast",
        },
        source="test",
    )


def compare(load: Load, render: FakeRender) -> CapacityReport:
    return run_capacity(
        descriptor(),
        p95_ms=P95,
        max_concurrency=1024,
        max_seconds=60,
        compare_single=True,
        client=render,  # type: ignore[arg-type]
        probe=lambda url: HealthResult(ok=True, detail="ok"),
        measure=load,
        sample_edge=lambda: [None if not render.suspended else 1] * 4,
        timing=sandbox_timing("fast"),
        sleep=lambda _s: None,
    )


def test_compare_single_reports_the_ratio_and_resumes_the_others() -> None:
    load = Load()
    render = FakeRender(load)
    report = compare(load, render)
    assert report.outcome == "passed", report.error
    assert [r.label for r in report.ramps] == ["2 instances", "1 instance (api-1)"]
    two, one = (r.knee for r in report.ramps)
    assert two is not None
    assert one is not None
    assert (two.concurrency, one.concurrency) == (48, 24)
    assert report.concurrency_ratio == 2.0
    assert report.ratio == pytest.approx(two.requests_per_second / one.requests_per_second)
    assert render.calls == ["suspend srv-2", "resume srv-2"]
    assert report.to_json()["resumed"] == [2]
    assert "capacity ratio 2 instances ÷ 1: " in "\n".join(summary_lines(report))


def test_an_interrupt_during_the_single_ramp_still_resumes() -> None:
    load = Load(interrupt_at=(1, 8))
    render = FakeRender(load)
    report = compare(load, render)
    assert report.outcome == "interrupted"
    assert report.exit_code == 130
    assert render.calls == ["suspend srv-2", "resume srv-2"]
    assert render.suspended == set()
    assert report.resumed == [2]


def test_a_failing_resume_is_named_with_the_command_to_run() -> None:
    load = Load()
    render = FakeRender(load)

    def refuse(sid: str) -> None:
        from koinonia_infra.errors import RenderApiError

        raise RenderApiError("api.render.com: 503")

    render.resume = refuse  # type: ignore[method-assign]
    report = compare(load, render)
    assert report.outcome == "failed"
    assert report.error is not None
    assert "koinonia-infra resume 2" in report.error


def test_the_plot_shows_both_ramps_on_one_scale_with_the_threshold() -> None:
    load = Load()
    report = compare(load, FakeRender(load))
    lines = plot(report)
    assert lines[0] == "p95 latency by concurrency (| = 100 ms threshold)"
    assert "2 instances:" in lines
    assert "1 instance (api-1):" in lines
    over = [line for line in lines if line.endswith(" over")]
    assert len(over) == 2  # the first step past the threshold of each ramp
    within = [line for line in lines if line.startswith("  c=") and not line.endswith("over")]
    assert all("|" in line for line in within)  # the threshold marker, past every bar within
    text = markdown(report)
    assert "```text\n" + "\n".join(lines) + "\n```" in text
    assert "| 1 instance (api-1) | 24 |" in text


# ---- the CLI -----------------------------------------------------------------------------------


def outputs_file(tmp_path: Path, dep: FakeDeployment) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(dep.descriptor()), encoding="utf-8")
    return path


def test_a_real_deployment_is_asked_first_and_without_a_terminal_needs_yes(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    before = fake_deployment.rr
    result = CliRunner().invoke(
        app, ["verify", "--outputs", str(outputs_file(tmp_path, fake_deployment)), "--capacity"]
    )
    assert result.exit_code == 2, result.output
    assert "verify --capacity loads the deployment: pass --yes" in result.output
    assert fake_deployment.rr == before  # not one request through the edge


def test_capacity_with_yes_ramps_within_the_flags_ceilings(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    report = tmp_path / "capacity.md"
    result = CliRunner().invoke(
        app,
        ["verify", "--outputs", str(outputs_file(tmp_path, fake_deployment)), "--capacity",
         "--yes", "--max-concurrency", "4", "--max-seconds", "30", "--p95-ms", "5000",
         "-f", "json", "--report", str(report)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    (only,) = data["ramps"]
    assert [s["concurrency"] for s in only["steps"]] == [1, 2, 4]
    assert only["kneeConcurrency"] == 4
    assert only["stopped"] == "concurrency ceiling (4) reached within the threshold"
    assert data["maxConcurrency"] == 4
    assert "p95 latency by concurrency" in report.read_text(encoding="utf-8")


def test_capacity_flags_without_capacity_are_refused(
    tmp_path: Path, fake_deployment: FakeDeployment
) -> None:
    result = CliRunner().invoke(
        app,
        ["verify", "--outputs", str(outputs_file(tmp_path, fake_deployment)), "--compare-single"],
    )
    assert result.exit_code == 2
    assert "go with --capacity" in result.output
