"""The Preview workflow's pull-request comment (scripts/pr_comment.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from koinonia_infra.deploy.types import ChangePlan, Step

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pr_comment.py"
URN = "urn:pulumi:prod::koinonia::{type}::{name}"
WEB = "render:services:WebService"
POSTGRES = "render:postgres:Postgres"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pr_comment", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


pr_comment = _load_script()


def step(op: str, name: str, type_: str = WEB) -> Step:
    return Step(op=op, urn=URN.format(type=type_, name=name), type=type_)


def preview_json(steps: list[Step], summary: dict[str, int]) -> dict[str, Any]:
    """What `koinonia-infra preview --format json` prints, from the code that prints it."""
    return ChangePlan(stack="prod", steps=steps, summary=summary).to_json()


def plan_json(items: dict[str, float]) -> dict[str, Any]:
    return {
        "stack": "prod",
        "resources": [],
        "monthlyCost": {
            "total": sum(items.values()),
            "currency": "USD",
            "pricesAsOf": "2026-01",
            "items": [
                {"logicalName": name, "plan": "standard", "usd": amount}
                for name, amount in items.items()
            ],
        },
    }


def comment(
    preview: dict[str, Any] | None,
    pr: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
    exit_code: int = 0,
) -> str:
    text: str = pr_comment.render_comment(
        stack="prod",
        preview=None if preview is None else pr_comment.parse_preview(preview),
        preview_exit_code=exit_code,
        pr_cost=None if pr is None else pr_comment.parse_plan(pr),
        base_cost=None if base is None else pr_comment.parse_plan(base),
        run_url="https://github.example/runs/1",
    )
    return text


def section(text: str, title: str) -> str:
    """The quoted block that starts with `> **title**`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"> **{title}**"))
    block = []
    for line in lines[start:]:
        if not line.startswith(">"):
            break
        block.append(line)
    return "\n".join(block)


def test_replacements_and_deletions_are_called_out_by_name() -> None:
    preview = preview_json(
        [
            step("create", "api-3"),
            step("replace", "edge"),
            step("replace", "koinonia-db", POSTGRES),
            step("delete", "api-2"),
            step("update", "api-1-env", "render:services:EnvVarsForService"),
        ],
        {"create": 1, "replace": 2, "delete": 1, "update": 1, "same": 4},
    )
    text = comment(preview)

    assert text.splitlines()[0] == pr_comment.MARKER
    assert "**1 to create** · **1 to update** · **2 to replace** ⚠️ · **1 to delete** ⚠️" in text
    assert "4 unchanged" in text
    replaced = section(text, "Replacements")
    assert "`edge`" in replaced
    assert "`koinonia-db`" in replaced
    assert "datastore: its data is lost" in replaced
    assert "api-2" not in replaced
    assert "`edge` (render:services:WebService)\n" in replaced + "\n"
    deleted = section(text, "Deletions")
    assert "`api-2`" in deleted
    assert "edge" not in deleted
    # Every change is in the table, unchanged resources are not.
    assert "| create | `api-3` | render:services:WebService |" in text
    assert "| update | `api-1-env` |" in text
    assert "All changes (5)" in text


def test_a_replacement_reported_as_several_steps_is_listed_once() -> None:
    preview = {
        "stack": "prod",
        "changeSummary": {"replace": 1},
        "steps": [
            {"op": op, "urn": URN.format(type=WEB, name="edge"), "type": WEB}
            for op in ("create-replacement", "replace", "delete-replaced")
        ],
    }
    text = comment(preview)
    assert section(text, "Replacements").count("`edge`") == 1
    assert "All changes (1)" in text
    assert "Deletions" not in text


def test_no_changes_says_so_without_warnings() -> None:
    text = comment(preview_json([step("same", "api-1")], {"same": 7}))
    assert "**No changes.**" in text
    assert "[!CAUTION]" not in text
    assert "All changes" not in text


def test_summary_is_counted_from_the_steps_when_the_preview_has_none() -> None:
    preview = {"steps": [step("create", "api-3").to_json(), step("delete", "api-2").to_json()]}
    text = comment(preview)
    assert "**1 to create** · **1 to delete** ⚠️" in text


def test_cost_delta_against_main_and_the_items_that_move() -> None:
    base = plan_json({"api-1": 25.0, "api-2": 25.0, "koinonia-db": 19.0, "edge": 7.0})
    pr = plan_json({"api-1": 25.0, "koinonia-db": 75.0, "edge": 7.0, "api-3": 85.0})
    text = comment(preview_json([], {}), pr, base)

    assert "**+$116.00** per month ($76.00 on main → $192.00 with this pull request)" in text
    assert "| `koinonia-db` (standard) | $19.00 | $75.00 | +$56.00 |" in text
    assert "| `api-3` (standard) | — | $85.00 | +$85.00 |" in text
    assert "| `api-2` (standard) | $25.00 | — | -$25.00 |" in text
    # Unchanged prices stay out of the table.
    assert "`api-1`" not in text
    assert "`edge`" not in text
    assert "list prices as of 2026-01" in text


def test_a_cheaper_pull_request_shows_a_negative_delta() -> None:
    base = plan_json({"api-1": 25.0, "api-2": 25.0})
    pr = plan_json({"api-1": 25.0})
    text = comment(preview_json([step("delete", "api-2")], {"delete": 1}), pr, base)
    assert "**-$25.00** per month" in text


def test_same_cost_says_no_change() -> None:
    both = plan_json({"api-1": 25.0})
    text = comment(preview_json([], {}), both, both)
    assert "**no change** per month" in text
    assert "| Resource |" not in text


def test_without_a_baseline_the_cost_is_shown_alone() -> None:
    text = comment(preview_json([], {}), plan_json({"api-1": 25.0, "edge": 7.0}), None)
    assert "**$32.00** per month. No baseline" in text
    assert "| `api-1` (standard) | $25.00 |" in text
    assert "on main" not in text


def test_a_failed_plan_and_a_failed_preview_are_reported_not_hidden() -> None:
    text = comment(None, None, None, exit_code=3)
    assert "`koinonia-infra preview` failed (exit code 3)" in text
    assert "https://github.example/runs/1" in text
    assert "Not available: `koinonia-infra plan` failed" in text
    assert "to create" not in text
    assert "No changes" not in text


def test_names_cannot_break_the_markdown_table() -> None:
    text = comment(preview_json([step("create", "a|b`c")], {"create": 1}))
    assert "| create | `a\\|b'c` |" in text


def test_main_writes_the_comment_from_the_workflow_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "preview.json").write_text(
        json.dumps(preview_json([step("delete", "api-2")], {"delete": 1, "same": 5}))
    )
    (tmp_path / "plan-pr.json").write_text(json.dumps(plan_json({"api-1": 25.0})))
    (tmp_path / "plan-main.json").write_text(json.dumps(plan_json({"api-1": 25.0, "api-2": 25.0})))
    code = pr_comment.main(
        [
            "--preview",
            str(tmp_path / "preview.json"),
            "--preview-exit-code",
            "0",
            "--plan",
            str(tmp_path / "plan-pr.json"),
            "--base-plan",
            str(tmp_path / "plan-main.json"),
            "--run-url",
            "https://github.example/runs/2",
        ]
    )
    out = capsys.readouterr()
    assert code == 0
    assert out.out.startswith(pr_comment.MARKER + "\n")
    assert "**1 to delete** ⚠️" in out.out
    assert "**-$25.00** per month" in out.out
    assert out.err == ""


def test_main_treats_a_missing_or_empty_file_as_a_failed_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "preview.json").write_text("")
    code = pr_comment.main(
        [
            "--preview",
            str(tmp_path / "preview.json"),
            "--plan",
            str(tmp_path / "absent.json"),
            "--base-plan",
            str(tmp_path / "absent-too.json"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "`koinonia-infra preview` wrote nothing" in out
    assert "Not available" in out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"monthlyCost": {"items": []}}), "monthlyCost.total: expected a number"),
        (
            json.dumps({"monthlyCost": {"total": 5, "items": [{"logicalName": "x"}]}}),
            "items[0]: no monthly amount",
        ),
    ],
)
def test_main_rejects_a_malformed_plan_with_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    bad = tmp_path / "plan-pr.json"
    bad.write_text(content)
    code = pr_comment.main(["--plan", str(bad)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {bad}")
    assert expected in err
    assert "Traceback" not in err


def test_an_unpriced_plan_is_shown_as_such_not_as_free() -> None:
    base = plan_json({"api-1": 25.0, "api-2": 25.0})
    pr = plan_json({"api-1": 25.0})
    pr["monthlyCost"]["items"].append({"logicalName": "api-2", "plan": "pro_max", "usd": None})
    pr["monthlyCost"]["items"].append({"logicalName": "api-3", "plan": "pro_max", "usd": None})
    text = comment(preview_json([], {}), pr, base)
    assert "| `api-2` (pro_max) | $25.00 | not priced | unknown |" in text
    assert "| `api-3` (pro_max) | — | not priced | unknown |" in text
    assert "left out of the totals: `api-2`, `api-3`." in text
    # The drop of the total is a lower bound, not a saving: the headline says so.
    assert "**-$25.00** per month for the priced resources ($50.00 on main" in text


def test_a_fully_priced_plan_has_no_unpriced_note() -> None:
    text = comment(preview_json([], {}), plan_json({"api-1": 25.0}), plan_json({"api-1": 7.0}))
    assert "price table" not in text


def test_cost_delta_from_the_plan_command_for_one_more_instance(tmp_path: Path) -> None:
    """End to end with the real `plan --format json` producer: main declares [1, 2], the pull
    request [1, 2, 3]; the delta is one web service at the stack's plan from the price table."""
    from koinonia_infra.plan import build_plan, load_prices, plan_json
    from koinonia_infra.settings import load_settings

    stack_text = (SCRIPT.parents[1] / "Pulumi.prod.yaml").read_text(encoding="utf-8")
    assert "instances: [1, 2]" in stack_text
    main_file, pr_file = tmp_path / "main.yaml", tmp_path / "pr.yaml"
    main_file.write_text(stack_text, encoding="utf-8")
    pr_file.write_text(stack_text.replace("instances: [1, 2]", "instances: [1, 2, 3]"))
    prices = load_prices()
    plans = []
    for path in (main_file, pr_file):
        settings = load_settings(path)
        plans.append(plan_json(build_plan(settings, stack="prod", prices=prices)))
    base, pr = json.loads(json.dumps(plans[0])), json.loads(json.dumps(plans[1]))

    web_plan = load_settings(pr_file).api.plan
    price = prices.web[web_plan]
    text = comment(preview_json([step("create", "api-3")], {"create": 1}), pr, base)
    assert f"**+${price:,.2f}** per month" in text
    assert f"| `api-3` ({web_plan}) | — | ${price:,.2f} | +${price:,.2f} |" in text
    assert "`api-1`" not in text.split("### Monthly cost")[1]


def test_the_script_runs_as_the_workflow_calls_it(tmp_path: Path) -> None:
    """`python scripts/pr_comment.py …` from the repository root, in a separate process."""
    (tmp_path / "preview.json").write_text(
        json.dumps(preview_json([step("replace", "api-2")], {"replace": 1}))
    )
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--preview", str(tmp_path / "preview.json")],
        cwd=SCRIPT.parents[1],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(pr_comment.MARKER + "\n")
    assert "**1 to replace** ⚠️" in result.stdout
    assert "Not available: `koinonia-infra plan` failed" in result.stdout
