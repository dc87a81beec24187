"""Smoke checks and build logs on the real sandbox: the reference instance's /smoke/database
reads PostgreSQL, /smoke/cache reads and writes a Redis key, on every instance and through the
edge (Caddy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from koinonia_infra.cli import app

pytestmark = pytest.mark.integration


def test_the_reference_endpoints_really_use_the_datastores(sandbox: Any) -> None:
    api1 = sandbox.descriptor.instances[0].url
    with httpx.Client(timeout=10) as http:
        db = http.get(api1 + "/smoke/database")
        first = http.get(api1 + "/smoke/cache").json()["cache"]
        second = http.get(api1 + "/smoke/cache").json()["cache"]
    assert db.status_code == 200, db.text
    assert db.json()["database"]["serverVersion"].split(".")[0].isdigit()
    assert db.json()["database"]["name"]
    # INCR: the value Redis holds was read and written back, one more each time.
    assert first["key"] == second["key"] == "koinonia:smoke:api-1"
    assert second["value"] == first["value"] + 1


def test_verify_on_the_sandbox_runs_the_smoke_checks_and_reads_build_logs(
    sandbox: Any, tmp_path: Path
) -> None:
    signoff = tmp_path / "signoff.md"
    result = CliRunner().invoke(
        app,
        ["verify", "--target", "sandbox", "--state-dir", str(sandbox.state_dir),
         "-n", "100", "-f", "json", "--report", str(signoff)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    checks = json.loads(result.stdout)["checks"]
    smoke = {(c["name"], c["target"]): c["status"] for c in checks if c["id"] == "smoke"}
    assert smoke == {
        (f"Smoke: {name}", target): "pass"
        for name in ("database", "cache")
        for target in ("api-1", "api-2", "edge")
    }
    build = next(c for c in checks if c["id"] == "build-logs")
    assert build["status"] == "pass", build
    assert build["measured"] == "no error lines"
    text = signoff.read_text(encoding="utf-8")
    assert "- [x] No errors in build logs — all: no error lines" in text
    assert "- [x] Smoke: cache on edge (GET /smoke/cache → 200" in text
