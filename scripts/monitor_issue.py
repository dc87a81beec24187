#!/usr/bin/env python3
"""Keep ONE GitHub issue for the monitor's alerts (the scheduled monitor workflow runs this).

    monitor_issue.py --status N --report FILE [--label monitor-alert] [--repo OWNER/NAME]

`--status` is the exit code of `koinonia-infra monitor --check`:

- 1 (a rule fired): update the body of the open issue labelled `--label` with the report, or
  open one if there is none. Never a second issue, never a comment per run: a rule that keeps
  firing every 15 minutes is one issue whose body says what fires now.
- 0 (all clear): close the open issue, if any, with a comment saying so.
- anything else (monitor could not run: config, credentials, API): touch nothing and fail with
  that code, so the workflow run is red rather than an issue claiming an alert or a recovery.

Only `gh` (GitHub's CLI, authenticated by GH_TOKEN in the environment) talks to GitHub; the
token never appears on a command line. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

TITLE = "Monitor: alert rules firing on prod"
# GitHub refuses issue bodies over 65,536 characters.
MAX_BODY = 60_000


def gh(*args: str) -> str:
    result = subprocess.run(["gh", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise SystemExit(f"gh {args[0]} {args[1] if len(args) > 1 else ''} failed: "
                         f"{message[-1] if message else result.returncode}")  # fmt: skip
    return result.stdout


def open_issues(repo: list[str], label: str) -> list[int]:
    raw = gh("issue", "list", *repo, "--label", label, "--state", "open",
             "--json", "number", "--limit", "20")  # fmt: skip
    return sorted(int(item["number"]) for item in json.loads(raw or "[]"))


def body(report: str, run_url: str | None) -> str:
    header = f"Updated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    if run_url:
        header += f" by [this monitor run]({run_url})"
    text = f"{header}.\n\n{report.strip()}\n"
    if len(text) > MAX_BODY:
        text = text[:MAX_BODY] + "\n\n(report cut: see the run's job summary)\n"
    return text


def run_url() -> str | None:
    server, repo, run = (os.environ.get(k) for k in
                         ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))  # fmt: skip
    return f"{server}/{repo}/actions/runs/{run}" if server and repo and run else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status", type=int, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--label", default="monitor-alert")
    parser.add_argument("--repo", default=os.environ.get("GITHUB_REPOSITORY"))
    args = parser.parse_args(argv)
    repo = ["--repo", args.repo] if args.repo else []

    if args.status not in (0, 1):
        print(f"monitor could not run (exit {args.status}): the alert issue is left as it is")
        return int(args.status)
    existing = open_issues(repo, args.label)
    report = args.report.read_text(encoding="utf-8") if args.report.exists() else ""
    if args.status == 0:
        for number in existing:
            gh("issue", "close", str(number), *repo, "--comment",
               f"Back to normal at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: "
               "no alert rule fires.")  # fmt: skip
            print(f"closed #{number}: back to normal")
        if not existing:
            print("all clear, no open alert issue")
        return 0
    with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False, encoding="utf-8") as f:
        f.write(body(report, run_url()))
        body_file = f.name
    try:
        if existing:
            gh("issue", "edit", str(existing[0]), *repo, "--body-file", body_file)
            print(f"updated #{existing[0]}")
        else:
            gh("label", "create", args.label, *repo, "--force", "--color", "B60205",
               "--description", "koinonia-infra monitor: an alert rule fires")  # fmt: skip
            url = gh("issue", "create", *repo, "--title", TITLE, "--label", args.label,
                     "--body-file", body_file).strip()  # fmt: skip
            print(f"opened {url}")
    finally:
        Path(body_file).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
