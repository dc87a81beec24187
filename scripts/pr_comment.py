"""Build the one pull-request comment of the Preview workflow, as Markdown on stdout.

Inputs: `koinonia-infra preview --format json` of the pull request, and `koinonia-infra plan
--format json` of the pull request and of main (the cost baseline). Any input may be missing
(a failed command): the comment then says what is unavailable instead of the job failing here.

    python scripts/pr_comment.py --preview preview.json --preview-exit-code 0 \
        --plan plan-pr.json --base-plan plan-main.json --run-url URL > comment.md

It runs where the tool is installed, and reads preview steps with the tool's own vocabulary
(koinonia_infra.deploy.types), so the comment and `koinonia-infra preview` never disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koinonia_infra.deploy.types import (
    DATASTORE_TYPES,
    DELETE_OPS,
    ENV_VARS,
    QUIET_OPS,
    REPLACE_OPS,
    WEB_SERVICE,
    Step,
)
from koinonia_infra.textsafe import md, md_code

# The workflow finds its earlier comment by this first line, and updates it instead of adding one.
MARKER = "<!-- koinonia-infra:preview -->"

# GitHub rejects comments over 65,536 characters; a long change list is cut well before that.
MAX_TABLE_ROWS = 150

# Order of the counts in the summary line; other ops follow alphabetically.
SUMMARY_ORDER = ("create", "update", "replace", "delete", "import")


class InputError(Exception):
    """An input file exists but is not what the command writes; the message names the file."""


@dataclass(frozen=True)
class Preview:
    summary: dict[str, int]
    steps: list[Step]
    # URNs the preview marked `"adopted": true` (production that ran before this tool).
    adopted: frozenset[str] = frozenset()

    def adopted_at_risk(self) -> list[Step]:
        """Replaced, deleted or redeployed adopted resources (a service or env-vars update is a
        deploy: pulumi-render provider/pkg/provider/provider.go, OnPostUpdate)."""
        redeploy = [
            s for s in self.with_op(frozenset({"update"})) if s.type in (WEB_SERVICE, ENV_VARS)
        ]
        risky = self.with_op(REPLACE_OPS | DELETE_OPS) + redeploy
        return [s for s in risky if s.urn in self.adopted]

    def with_op(self, ops: frozenset[str]) -> list[Step]:
        """Steps with one of `ops`, one per URN, in preview order."""
        seen: set[str] = set()
        found: list[Step] = []
        for step in self.steps:
            if step.op in ops and step.urn not in seen:
                seen.add(step.urn)
                found.append(step)
        return found


@dataclass(frozen=True)
class CostItem:
    name: str
    monthly: float | None  # None: the price table has no price for its plan
    plan: str = ""


@dataclass(frozen=True)
class Cost:
    total: float
    items: list[CostItem] = field(default_factory=list)
    currency: str = "USD"
    prices_as_of: str = ""


# --- reading the inputs -----------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: expected an object")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where}: expected a number, got {value!r}")
    return float(value)


def parse_preview(data: Any, source: str = "preview") -> Preview:
    """The preview's steps and change summary (counted from the steps when not given)."""
    doc = _mapping(data, source)
    raw_steps = doc.get("steps", [])
    if not isinstance(raw_steps, list):
        raise InputError(f"{source}: steps: expected a list")
    steps: list[Step] = []
    adopted: set[str] = set()
    for i, raw in enumerate(raw_steps):
        item = _mapping(raw, f"{source}: steps[{i}]")
        op, urn = item.get("op"), item.get("urn")
        if not isinstance(op, str) or not isinstance(urn, str):
            raise InputError(f"{source}: steps[{i}]: needs string 'op' and 'urn'")
        type_ = item.get("type")
        if not isinstance(type_, str):
            # urn:pulumi:<stack>::<project>::<type, maybe parent$child>::<name>
            type_ = urn.split("::")[-2].rsplit("$", 1)[-1] if urn.count("::") >= 3 else ""
        steps.append(Step(op=op, urn=urn, type=type_))
        if item.get("adopted") is True:
            adopted.add(urn)

    raw_summary = doc.get("changeSummary")
    summary: dict[str, int] = {}
    if raw_summary is None:
        counted: dict[str, set[str]] = {}
        for step in steps:
            op = "replace" if step.op in REPLACE_OPS else step.op
            counted.setdefault(op, set()).add(step.urn)
        summary = {op: len(urns) for op, urns in counted.items()}
    else:
        for op, count in _mapping(raw_summary, f"{source}: changeSummary").items():
            summary[op] = int(_number(count, f"{source}: changeSummary.{op}"))
    return Preview(summary=summary, steps=steps, adopted=frozenset(adopted))


def parse_plan(data: Any, source: str = "plan") -> Cost:
    """`monthlyCost` of a plan: its total and items (`usd` null: not in the price table)."""
    doc = _mapping(data, source)
    cost = _mapping(doc.get("monthlyCost"), f"{source}: monthlyCost")
    total = _number(cost.get("total"), f"{source}: monthlyCost.total")
    raw_items = cost.get("items", [])
    if not isinstance(raw_items, list):
        raise InputError(f"{source}: monthlyCost.items: expected a list")
    items = []
    for i, raw in enumerate(raw_items):
        where = f"{source}: monthlyCost.items[{i}]"
        item = _mapping(raw, where)
        name, plan = item.get("logicalName"), item.get("plan")
        if not isinstance(name, str) or not name:
            raise InputError(f"{where}: no logicalName")
        if "usd" not in item:
            raise InputError(f"{where}: no monthly amount (usd)")
        usd = None if item["usd"] is None else _number(item["usd"], f"{where}.usd")
        items.append(CostItem(name, usd, plan if isinstance(plan, str) else ""))
    currency, as_of = cost.get("currency"), cost.get("pricesAsOf")
    return Cost(
        total=total,
        items=items,
        currency=currency if isinstance(currency, str) and currency else "USD",
        prices_as_of=as_of if isinstance(as_of, str) else "",
    )


# --- rendering --------------------------------------------------------------------------------


# Resource names, types, plans and the stack name come from the pull request itself: they are
# shown as written (koinonia_infra.textsafe), never as Markdown structure, a mention-free code
# span for names, escaped text elsewhere.


def money(amount: float, currency: str = "USD") -> str:
    sign = "-" if amount < 0 else ""
    body = f"{abs(amount):,.2f}"
    return f"{sign}${body}" if currency == "USD" else f"{sign}{body} {currency}"


def delta(amount: float, currency: str = "USD") -> str:
    if abs(amount) < 0.005:
        return "no change"
    return ("+" if amount > 0 else "") + money(amount, currency)


def summary_line(preview: Preview) -> str:
    counts = {op: n for op, n in preview.summary.items() if n}
    changing = {op: n for op, n in counts.items() if op not in QUIET_OPS}
    if not changing:
        return "**No changes.** The stack already matches this pull request."
    ordered = [op for op in SUMMARY_ORDER if op in changing]
    ordered += sorted(op for op in changing if op not in SUMMARY_ORDER)
    parts = []
    for op in ordered:
        text = f"{changing[op]} to {op}"
        parts.append(f"**{text}** ⚠️" if op in {"replace", "delete"} else f"**{text}**")
    unchanged = counts.get("same", 0)
    tail = f" · {unchanged} unchanged" if unchanged else ""
    return " · ".join(parts) + tail


def _danger_list(title: str, why: str, steps: Sequence[Step]) -> list[str]:
    lines = ["> [!CAUTION]", f"> **{title}** — {why}", ">"]
    for step in steps:
        note = (
            " — **datastore: its data is lost** (`up` refuses this without `--allow-data-loss`)"
            if step.type in DATASTORE_TYPES
            else ""
        )
        lines.append(f"> - {md_code(step.name)} ({md(step.type)}){note}")
    return [*lines, ""]


def _changes_table(preview: Preview) -> list[str]:
    rows: list[Step] = []
    seen: set[tuple[str, str]] = set()
    for step in preview.steps:
        op = "replace" if step.op in REPLACE_OPS else step.op
        if op in QUIET_OPS or (op, step.urn) in seen:
            continue
        seen.add((op, step.urn))
        rows.append(Step(op=op, urn=step.urn, type=step.type))
    if not rows:
        return []
    lines = [
        f"<details><summary>All changes ({len(rows)})</summary>",
        "",
        "| Operation | Resource | Type |",
        "|---|---|---|",
    ]
    for step in rows[:MAX_TABLE_ROWS]:
        lines.append(f"| {md(step.op)} | {md_code(step.name)} | {md(step.type)} |")
    if len(rows) > MAX_TABLE_ROWS:
        lines.append(f"| … | {len(rows) - MAX_TABLE_ROWS} more in the workflow log | |")
    return [*lines, "", "</details>", ""]


def _cost_section(pr: Cost | None, base: Cost | None) -> list[str]:
    lines = ["### Monthly cost", ""]
    if pr is None:
        return [*lines, "Not available: `koinonia-infra plan` failed for this pull request.", ""]
    cur = pr.currency
    unpriced = sorted({i.name for c in (pr, base) if c for i in c.items if i.monthly is None})
    # Without a price for every resource the totals are lower bounds and their difference can
    # look like a saving that is not one: say so in the headline itself.
    priced = " for the priced resources" if unpriced else ""
    if base is None:
        lines += [
            f"**{money(pr.total, cur)}** per month{priced}. No baseline: `koinonia-infra plan` "
            "could not read main's stack file with this version.",
            "",
        ]
    else:
        lines += [
            f"**{delta(pr.total - base.total, cur)}** per month{priced} "
            f"({money(base.total, cur)} on main → {money(pr.total, cur)} with this pull request).",
            "",
        ]
    if unpriced:
        names = ", ".join(md_code(name) for name in unpriced)
        lines += [
            "> [!NOTE]",
            f"> Not in the price table, so left out of the totals: {names}.",
            "",
        ]
    lines += _cost_items(pr, base)
    if pr.prices_as_of:
        lines += [f"<sub>Estimate from list prices as of {md(pr.prices_as_of)}.</sub>", ""]
    return lines


def _cost_items(pr: Cost, base: Cost | None) -> list[str]:
    """Per-resource table: every item without a baseline, only the items that move with one."""
    cur = pr.currency

    def label(item: CostItem) -> str:
        return md_code(item.name) + (f" ({md(item.plan)})" if item.plan else "")

    def amount(item: CostItem | None) -> str:
        if item is None:
            return "—"
        return "not priced" if item.monthly is None else money(item.monthly, cur)

    if base is None:
        if not pr.items:
            return []
        rows = [f"| {label(item)} | {amount(item)} |" for item in pr.items]
        return ["| Resource | per month |", "|---|---:|", *rows, ""]

    def usd(item: CostItem | None) -> float | None:
        """The item's price; 0 for an absent item; None when the table has no price."""
        return 0.0 if item is None else item.monthly

    before = {item.name: item for item in base.items}
    after = {item.name: item for item in pr.items}
    rows = []
    for name in [*after, *(n for n in before if n not in after)]:
        old, new = before.get(name), after.get(name)
        if old is not None and new is not None and old.plan == new.plan and usd(old) == usd(new):
            continue
        shown = new if new is not None else old
        assert shown is not None  # the name came from one of the two
        old_usd, new_usd = usd(old), usd(new)
        change = "unknown" if old_usd is None or new_usd is None else delta(new_usd - old_usd, cur)
        rows.append(f"| {label(shown)} | {amount(old)} | {amount(new)} | {change} |")
    if not rows:
        return []
    return ["| Resource | main | this PR | change |", "|---|---:|---:|---:|", *rows, ""]


def render_comment(
    *,
    stack: str,
    preview: Preview | None,
    preview_exit_code: int = 0,
    pr_cost: Cost | None,
    base_cost: Cost | None,
    run_url: str = "",
) -> str:
    """The whole comment. The marker stays the first line: the workflow finds the comment by it."""
    run_link = f"[workflow run]({run_url})" if run_url else "workflow run"
    lines = [MARKER, f"## koinonia-infra preview — stack {md_code(stack)}", ""]
    if preview_exit_code != 0 or preview is None:
        failure = (
            f"failed (exit code {preview_exit_code})" if preview_exit_code else "wrote nothing"
        )
        lines += [
            "> [!WARNING]",
            f"> `koinonia-infra preview` {failure}: see the {run_link} for its messages. "
            "What this pull request changes is not known.",
            "",
        ]
    else:
        lines += [summary_line(preview), ""]
        replaced = preview.with_op(REPLACE_OPS)
        deleted = preview.with_op(DELETE_OPS)
        at_risk = preview.adopted_at_risk()
        if at_risk:
            lines += _danger_list(
                "Adopted production resources",
                "they ran before this tool adopted them; this pull request replaces, deletes "
                "or redeploys them:",
                at_risk,
            )
        if replaced:
            lines += _danger_list(
                "Replacements",
                "each gets a new id and, for a service, a new URL; the old one is deleted:",
                replaced,
            )
        if deleted:
            lines += _danger_list("Deletions", "these resources are removed:", deleted)
        lines += _changes_table(preview)
    lines += _cost_section(pr_cost, base_cost)
    lines += [f"<sub>Updated by the Preview {run_link}.</sub>"]
    return "\n".join(lines) + "\n"


# --- command line ------------------------------------------------------------------------------


def _optional(path: Path | None, parse: Any, source: str) -> Any:
    """Parsed file, or None when the command that writes it failed (no file, or an empty one)."""
    if path is None or not path.is_file() or path.stat().st_size == 0:
        return None
    return parse(_load_json(path), source)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--preview", type=Path, help="preview --format json output")
    parser.add_argument("--preview-exit-code", type=int, default=0)
    parser.add_argument("--plan", type=Path, help="plan --format json of the pull request")
    parser.add_argument("--base-plan", type=Path, help="plan --format json of main")
    parser.add_argument("--run-url", default="")
    args = parser.parse_args(argv)
    try:
        preview = _optional(args.preview, parse_preview, str(args.preview))
        pr_cost = _optional(args.plan, parse_plan, str(args.plan))
        base_cost = _optional(args.base_plan, parse_plan, str(args.base_plan))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(
        render_comment(
            stack=args.stack,
            preview=preview,
            preview_exit_code=args.preview_exit_code,
            pr_cost=pr_cost,
            base_cost=base_cost,
            run_url=args.run_url,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
