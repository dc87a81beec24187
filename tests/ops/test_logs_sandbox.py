"""The drill's log check on the real sandbox: the instances' log files, read back by the control
plane's /logs (sandbox/observability.py), as Render's log service reads an app's output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sandbox_ops import Drill

from koinonia_infra.ops.drill import LOG_CHECK

pytestmark = pytest.mark.integration


def test_an_instance_logging_an_error_during_the_drill_fails_the_log_check(
    sandbox: Any, tmp_path: Path
) -> None:
    run = Drill(sandbox, 1, duration=3, lock_home=tmp_path)
    try:
        run.wait_for("suspend api-1 requested")
        # The surviving instance logs an error while it serves alone, as the application would.
        with (sandbox.state_dir / "logs" / "api-2.log").open("a", encoding="utf-8") as log:
            log.write("Error: sms provider refused api_key=sk_live_0123456789 after 3s\n")
        code, stdout, stderr = run.finish()
    finally:
        run.kill()
    assert code == 1, stderr
    report = json.loads(stdout)
    assert report["resumed"] is True
    check = next(c for c in report["checks"] if c["name"] == LOG_CHECK)
    assert check["passed"] is False
    assert check["measured"] == (
        "1 error line(s): api-2: Error: sms provider refused api_key=[secret] after 3s"
    )
    assert "sk_live_0123456789" not in stdout + stderr
    # Everything else of the drill passed: the log line alone failed it.
    others = [c for c in report["checks"] if c["name"] != LOG_CHECK and c["gating"]]
    assert all(c["passed"] for c in others), others


def test_a_quiet_drill_passes_the_log_check(sandbox: Any, tmp_path: Path) -> None:
    run = Drill(sandbox, 2, duration=3, lock_home=tmp_path)
    try:
        code, stdout, stderr = run.finish()
    finally:
        run.kill()
    assert code == 0, stderr
    check = next(c for c in json.loads(stdout)["checks"] if c["name"] == LOG_CHECK)
    assert check == {
        "name": LOG_CHECK,
        "passed": True,
        "measured": "no error lines",
        "threshold": "0 error lines",
        "gating": True,
    }
