"""`verify --capacity --compare-single` on the real sandbox: the knee of two instances against
one, through Caddy, with the second instance really suspended and resumed.

The load is the reference instance's CPU-bound route (`/_sandbox/burn/0.01`: 10 ms of CPU per
request, in one Python process), so each instance, not the shared edge or load generator, is
what saturates, as an API instance at ~100 % CPU does in the runbook. This machine has 2 cores
shared with Caddy, PostgreSQL, Redis, the load generator and other jobs: the ratio cannot
reach 2. Measured while other test runs loaded it (load average 4.5): 1.39 and 1.49. The test
asserts only a ratio above 1 and prints the numbers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from koinonia_infra.cli import app

pytestmark = pytest.mark.integration


def test_two_instances_have_a_higher_knee_than_one_and_both_end_resumed(
    sandbox: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    result = CliRunner().invoke(
        app,
        ["verify", "--target", "sandbox", "--state-dir", str(sandbox.state_dir), "--capacity",
         "--compare-single", "--capacity-path", "/_sandbox/burn/0.01", "--p95-ms", "250",
         "--max-concurrency", "64", "--max-seconds", "60", "-f", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    two, one = data["ramps"]
    with capsys.disabled():
        print(
            f"\ncapacity knee: 2 instances {two['kneeRequestsPerSecond']} req/s at concurrency "
            f"{two['kneeConcurrency']}; 1 instance {one['kneeRequestsPerSecond']} req/s at "
            f"concurrency {one['kneeConcurrency']}; ratio {data['ratio']}x req/s "
            f"({data['concurrencyRatio']}x concurrency)"
        )
    assert (two["instances"], one["instances"]) == (2, 1)
    assert data["suspended"] == [2]
    assert data["resumed"] == [2]
    assert data["ratio"] > 1.0, data
    # api-2 serves again: the edge reaches both.
    with httpx.Client(timeout=10) as http:
        for inst in sandbox.descriptor.instances:
            assert http.get(inst.url + "/health").status_code == 200
