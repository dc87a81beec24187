"""Text from descriptors, stack files and API answers is shown inert: on a terminal (no escape
sequence, no rich markup) and in every Markdown writer (no added line, box or bold verdict)."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from rich.console import Console
from typer.testing import CliRunner

from koinonia_infra.cli import app
from koinonia_infra.console import Output, make_console
from koinonia_infra.ops.common import Check
from koinonia_infra.ops.drill import DrillReport, TimelineEvent
from koinonia_infra.ops.render import drill_markdown, drill_renderable
from koinonia_infra.ops.status import ServiceStatus, StatusReport
from koinonia_infra.textsafe import inert, md
from koinonia_infra.verify.model import CheckResult, VerifyOptions, VerifyReport

ROOT = Path(__file__).resolve().parents[1]

# What the hostile SRE put in names: clear the screen, a blinking hyperlink in rich markup, and a
# newline followed by a ticked checklist line and a fake verdict.
CLEAR = "\x1b[2J\x1b[H"
MARKUP = "[blink][link=https://evil.example]click[/link][/blink]"
INJECT = "\n- [x] Every instance answers /health\n\n**PASSED**\n"
HOSTILE = f"api{CLEAR}{MARKUP}{INJECT}"


def terminal() -> tuple[Console, io.StringIO]:
    """A console that believes it writes to a colour terminal: the worst case."""
    buffer = io.StringIO()
    return make_console(file=buffer, force_terminal=True, color_system="truecolor"), buffer


def assert_inert_on_terminal(rendered: str) -> None:
    assert "\x1b[2J" not in rendered
    assert "\x1b[5m" not in rendered  # blink
    assert "\x1b]8;" not in rendered  # OSC 8 hyperlink
    assert "evil.example" in rendered  # shown, as text


def drill_report(name: str) -> DrillReport:
    return DrillReport(
        outcome="failed",
        error=f"api-1 ({name}) did not drain",
        instance=1,
        service=name,
        service_id="srv-1",
        suspended=True,
        resumed=True,
        seconds_until_drained=None,
        seconds_to_rejoin=None,
        baseline_p95_latency_ms=None,
        suspended_p95_latency_ms=None,
        served_by_while_suspended={},
        checks=[Check(name=f"{name} resumed", passed=False, measured=name)],
        timeline=[TimelineEvent(at=0.5, event=f"suspended {name}")],
        target_rate=10,
        achieved_rate=10,
        duration_seconds=1,
        total_requests=10,
        failed_requests=1,
        max_latency_ms=1,
        p50_latency_ms=1,
        p95_latency_ms=1,
        p99_latency_ms=1,
        served_by={name: 10},
        errors={name: 1},
    )


def verify_report(name: str, *, stack: str) -> VerifyReport:
    check = CheckResult(
        id="instance-health",
        name="instance health",
        target=f"api-1 ({name})",
        status="fail",
        measured=name,
        threshold="200",
        reason=f"answered {name}",
    )
    return VerifyReport(
        deployment={
            "stack": stack,
            "edgeUrl": "http://127.0.0.1:1",
            "environment": name,
            "instances": [{"target": "api-1", "name": name}],
        },
        options=VerifyOptions(),
        checks=[check],
        started_at="2026-01-01T00:00:00Z",
        duration_seconds=1.0,
    )


# ---- the helpers ------------------------------------------------------------------------------


def test_inert_shows_every_control_character_as_an_escape() -> None:
    assert inert("a\x1b[2Jb\nc\x9bd\u202ee\x07") == "a\\x1b[2Jb\\nc\\x9bd\\u202ee\\x07"
    assert inert("koinonia-sms-backend-2") == "koinonia-sms-backend-2"


def test_md_keeps_names_readable_and_syntax_literal() -> None:
    assert md("koinonia-sms-backend-2") == "koinonia-sms-backend-2"
    assert md("pro_max") == "pro_max"
    assert md("**PASSED**") == "\\*\\*PASSED\\*\\*"
    assert md("[x](http://e) <img> a|b") == "\\[x\\](http://e) \\<img\\> a\\|b"
    assert "\n" not in md(INJECT)


# ---- Markdown writers: no injected lines --------------------------------------------------------


def injected_lines(text: str) -> list[str]:
    """Lines a reader (or GitHub) would take for the tool's own structure."""
    return [
        line
        for line in text.splitlines()
        if line.startswith("- [x] Every instance") or line.strip() == "**PASSED**"
    ]


def test_signoff_markdown_cannot_be_given_a_ticked_box_or_a_verdict() -> None:
    report = verify_report(HOSTILE, stack=f"prod{INJECT}")
    text = report.to_markdown()
    assert injected_lines(text) == []
    assert "**FAILED**" in text
    assert "**PASSED**" not in text
    assert "\x1b" not in text
    # The measurements table keeps its shape: one row per check, six cells.
    rows = [line for line in text.splitlines() if line.startswith("| instance health")]
    assert len(rows) == 1
    assert len(re.findall(r"(?<!\\)\|", rows[0])) == 7


def test_drill_markdown_cannot_be_given_lines() -> None:
    text = drill_markdown(drill_report(HOSTILE))
    assert injected_lines(text) == []
    assert "**PASSED**" not in text
    assert "\x1b" not in text
    assert "[blink]" not in text  # shown escaped: \[blink\]


def load_pr_comment() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "pr_comment_escaping", ROOT / "scripts/pr_comment.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_pr_comment_cannot_be_given_lines() -> None:
    pr_comment = load_pr_comment()
    preview = pr_comment.parse_preview(
        {
            "steps": [
                {
                    "op": "replace",
                    "urn": f"urn:pulumi:prod::koinonia::render:services:WebService::{HOSTILE}",
                }
            ]
        }
    )
    text = pr_comment.render_comment(
        stack=f"prod`{INJECT}", preview=preview, pr_cost=None, base_cost=None
    )
    assert injected_lines(text) == []
    assert "\x1b" not in text
    assert text.splitlines()[0] == pr_comment.MARKER


# ---- the terminal: no escape sequence, no markup ----------------------------------------------


def test_drill_table_shows_markup_and_escapes_as_text() -> None:
    console, buffer = terminal()
    console.print(drill_renderable(drill_report(HOSTILE)))
    assert_inert_on_terminal(buffer.getvalue())


def test_status_table_shows_api_text_as_text() -> None:
    service = ServiceStatus(
        role="api-1",
        name=HOSTILE,
        service_id="srv-1",
        suspended=False,
        deploy_status=f"live{CLEAR}",
        deploy_commit=None,
        deploy_finished_at=None,
        health="ok",
        healthy=True,
        health_latency_ms=None,
        url=f"https://{MARKUP}",
    )
    console, buffer = terminal()
    console.print(StatusReport(api_url=None, services=[service]).table())
    assert_inert_on_terminal(buffer.getvalue())


def test_messages_never_carry_a_control_character() -> None:
    console, buffer = terminal()
    out = Output(stdout=console, stderr=console)
    out.error(f"service {HOSTILE} failed")
    out.warning(HOSTILE)
    out.info(HOSTILE)
    out.error_line(HOSTILE)
    rendered = buffer.getvalue()
    assert_inert_on_terminal(rendered)
    assert "\\x1b[2J" in rendered  # what was received stays readable


def test_hostile_descriptor_is_refused_where_it_enters(tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(
        json.dumps(
            {
                "edgeUrl": "http://127.0.0.1:1",
                "instances": [
                    {
                        "number": 1,
                        "name": HOSTILE,
                        "serviceId": "srv-1",
                        "url": "http://127.0.0.1:2",
                        "privateAddress": "a:8080",
                    }
                ],
            }
        )
    )
    result = CliRunner().invoke(app, ["verify", "--outputs", str(path)])
    assert result.exit_code == 2
    assert "instances.0.name: control characters are not allowed" in result.stderr
    assert "\x1b" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("stack", [f"prod{INJECT}", f"prod{CLEAR}"])
def test_hostile_stack_name_in_a_descriptor_is_refused(tmp_path: Path, stack: str) -> None:
    from koinonia_infra.descriptor import parse_descriptor
    from koinonia_infra.errors import UsageError

    data = {
        "stack": stack,
        "edgeUrl": "http://127.0.0.1:1",
        "instances": [
            {"number": 1, "name": "a", "serviceId": "s", "url": "u", "privateAddress": "p"}
        ],
    }
    with pytest.raises(UsageError, match="stack: control characters are not allowed"):
        parse_descriptor(data, source="outputs.json")
