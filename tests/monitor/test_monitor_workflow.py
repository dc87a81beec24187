"""The scheduled monitor workflow: its monitor step keeps the exit code, and
scripts/monitor_issue.py keeps ONE issue (open, update, close) through a fake `gh`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "monitor_issue.py"
WORKFLOW = ROOT / ".github" / "workflows" / "monitor.yml"

FAKE_GH = textwrap.dedent(
    """\
    #!{python}
    # A fake GitHub CLI: issues live in $FAKE_GH_STATE; every call is recorded there.
    import json, os, sys
    path = os.environ["FAKE_GH_STATE"]
    state = json.load(open(path))
    args = sys.argv[1:]
    state["calls"].append(args)
    def opt(name):
        return args[args.index(name) + 1] if name in args else None
    out = ""
    if args[:2] == ["issue", "list"]:
        label, wanted = opt("--label"), opt("--state")
        out = json.dumps([{{"number": i["number"]}} for i in state["issues"]
                          if label in i["labels"] and i["state"] == wanted])
    elif args[:2] == ["issue", "create"]:
        number = 100 + len(state["issues"])
        body = open(opt("--body-file")).read()
        state["issues"].append({{"number": number, "state": "open", "title": opt("--title"),
                                "labels": [opt("--label")], "body": body}})
        out = f"https://github.com/o/r/issues/{{number}}"
    elif args[:2] == ["issue", "edit"]:
        issue = next(i for i in state["issues"] if i["number"] == int(args[2]))
        issue["body"] = open(opt("--body-file")).read()
    elif args[:2] == ["issue", "close"]:
        issue = next(i for i in state["issues"] if i["number"] == int(args[2]))
        issue["state"] = "closed"
        issue["closing_comment"] = opt("--comment")
    elif args[:2] == ["label", "create"]:
        pass
    else:
        print(f"unexpected gh {{args}}", file=sys.stderr)
        sys.exit(2)
    json.dump(state, open(path, "w"))
    print(out)
    """
)


class FakeGitHub:
    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        gh = self.bin / "gh"
        gh.write_text(FAKE_GH.format(python=sys.executable), encoding="utf-8")
        gh.chmod(0o755)
        self.state = tmp_path / "gh-state.json"
        self.state.write_text(json.dumps({"issues": [], "calls": []}), encoding="utf-8")
        self.report = tmp_path / "monitor.md"

    def data(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.state.read_text(encoding="utf-8"))
        return loaded

    def run(self, status: int, report: str = "") -> subprocess.CompletedProcess[str]:
        self.report.write_text(report, encoding="utf-8")
        return subprocess.run(
            [sys.executable, str(SCRIPT), "--status", str(status), "--report", str(self.report)],
            env={
                "PATH": f"{self.bin}:/usr/bin:/bin",
                "FAKE_GH_STATE": str(self.state),
                "GITHUB_REPOSITORY": "o/r",
                "GITHUB_SERVER_URL": "https://github.com",
                "GITHUB_RUN_ID": "42",
            },
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def open_issues(self) -> list[dict[str, Any]]:
        return [i for i in self.data()["issues"] if i["state"] == "open"]


@pytest.fixture
def github(tmp_path: Path) -> FakeGitHub:
    return FakeGitHub(tmp_path)


FIRING = "# koinonia monitor\n\n**1 alert rule(s) fired**\n\n| cpu | api-1 | 95 % | 80 % |\n"


def test_a_firing_rule_opens_one_issue_with_the_report(github: FakeGitHub) -> None:
    result = github.run(1, FIRING)
    assert result.returncode == 0, result.stderr
    [issue] = github.open_issues()
    assert issue["title"] == "Monitor: alert rules firing on prod"
    assert issue["labels"] == ["monitor-alert"]
    assert "| cpu | api-1 | 95 % | 80 % |" in issue["body"]
    assert "[this monitor run](https://github.com/o/r/actions/runs/42)" in issue["body"]


def test_repeated_firing_updates_the_open_issue_never_a_flood(github: FakeGitHub) -> None:
    github.run(1, FIRING)
    for n in range(3):
        result = github.run(1, FIRING.replace("95 %", f"9{n} %"))
        assert result.returncode == 0, result.stderr
    [issue] = github.open_issues()
    assert "| cpu | api-1 | 92 % | 80 % |" in issue["body"]
    creates = [c for c in github.data()["calls"] if c[:2] == ["issue", "create"]]
    assert len(creates) == 1
    assert not [c for c in github.data()["calls"] if c[:2] == ["issue", "comment"]]


def test_all_clear_closes_the_open_issue_and_then_does_nothing(github: FakeGitHub) -> None:
    github.run(1, FIRING)
    result = github.run(0, "# koinonia monitor\n\n**All clear**\n")
    assert result.returncode == 0, result.stderr
    assert github.open_issues() == []
    [issue] = github.data()["issues"]
    assert issue["closing_comment"].startswith("Back to normal at ")
    calls = len(github.data()["calls"])
    assert github.run(0).returncode == 0
    # Only the lookup: nothing opened or closed when there was nothing open.
    assert [c[:2] for c in github.data()["calls"][calls:]] == [["issue", "list"]]


def test_a_monitor_that_could_not_run_touches_no_issue_and_fails(github: FakeGitHub) -> None:
    github.run(1, FIRING)
    before = len(github.data()["calls"])
    result = github.run(3)
    assert result.returncode == 3
    assert "monitor could not run (exit 3)" in result.stdout
    assert len(github.data()["calls"]) == before
    assert len(github.open_issues()) == 1


def step_script(name: str) -> tuple[str, dict[str, Any]]:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    step = next(s for s in workflow["jobs"]["monitor"]["steps"] if s.get("name") == name)
    return str(step["run"]), step


@pytest.mark.parametrize("code", [0, 1, 3])
def test_the_monitor_step_records_the_exit_code_and_passes(tmp_path: Path, code: int) -> None:
    script, step = step_script("koinonia-infra monitor")
    assert set(step["env"]) == {"PULUMI_ACCESS_TOKEN", "PULUMI_BACKEND_URL",
                                "PULUMI_CONFIG_PASSPHRASE", "RENDER_API_KEY"}  # fmt: skip
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "koinonia-infra"
    fake.write_text(
        f'#!/bin/sh\necho "$@" > "{tmp_path}/argv"\necho "# koinonia monitor"\nexit {code}\n'
    )
    fake.chmod(0o755)
    output = tmp_path / "github_output"
    output.write_text("")
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "GITHUB_OUTPUT": str(output),
            "RUNNER_TEMP": str(tmp_path),
            "STACK": "prod",
        },
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert output.read_text() == f"status={code}\n"
    assert (tmp_path / "argv").read_text().split() == [
        "monitor", "--stack", "prod", "--since", "15m", "--check", "--format", "markdown"
    ]  # fmt: skip
    assert (tmp_path / "monitor.md").read_text() == "# koinonia monitor\n"


def test_the_workflow_runs_every_15_minutes_one_at_a_time() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    on = workflow.get("on", workflow.get(True))
    assert on["schedule"] == [{"cron": "*/15 * * * *"}]
    assert workflow["concurrency"]["cancel-in-progress"] is False
    script, step = step_script("Open, update or close the alert issue")
    assert "scripts/monitor_issue.py" in script
    assert step["env"]["STATUS"] == "${{ steps.monitor.outputs.status }}"
    assert os.access(SCRIPT, os.R_OK)
