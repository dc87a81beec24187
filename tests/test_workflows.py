"""The delivery pipeline in .github/: linted, hardened, and calling commands that exist."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
GITHUB = ROOT / ".github"
WORKFLOW_DIR = GITHUB / "workflows"
NAMES = ("ci", "preview", "deploy", "rollback")
WORKFLOW_FILES = [WORKFLOW_DIR / f"{name}.yml" for name in NAMES]
BIN = Path(sys.executable).parent
SECRET_NAMES = (
    "PULUMI_ACCESS_TOKEN",
    "PULUMI_BACKEND_URL",
    "PULUMI_CONFIG_PASSPHRASE",
    "RENDER_API_KEY",
    "GH_TOKEN",
)
# The only write scopes in the pipeline, and the jobs that hold them.
ALLOWED_WRITES = {
    ("preview", "preview"): {"pull-requests"},
    ("rollback", "pull-request"): {"contents", "pull-requests"},
}


def load(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOW_DIR / f"{name}.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    on = workflow.get("on", workflow.get(True))
    assert isinstance(on, dict), "triggers must be a mapping"
    return on


def jobs(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from load(name)["jobs"].items()


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    found = job.get("steps", [])
    assert isinstance(found, list)
    return found


def run_scripts(name: str) -> Iterator[str]:
    for _, job in jobs(name):
        for step in steps(job):
            if "run" in step:
                yield str(step["run"])


def step_index(job: dict[str, Any], pattern: str) -> int:
    matches = [i for i, s in enumerate(steps(job)) if re.search(pattern, str(s.get("run", "")))]
    assert len(matches) == 1, f"expected one step running {pattern!r}, found {len(matches)}"
    return matches[0]


def environment_name(job: dict[str, Any]) -> str | None:
    env = job.get("environment")
    if isinstance(env, dict):
        name = env.get("name")
        return str(name) if name is not None else None
    return None if env is None else str(env)


# --- linters ----------------------------------------------------------------------------------


def test_every_workflow_is_tested_here() -> None:
    assert sorted(WORKFLOW_DIR.glob("*.y*ml")) == sorted(WORKFLOW_FILES)


def test_workflows_and_dependabot_validate_against_githubs_schemas() -> None:
    for schema, files in (
        ("vendor.github-workflows", WORKFLOW_FILES),
        ("vendor.dependabot", [GITHUB / "dependabot.yml"]),
    ):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "check_jsonschema",
                "--builtin-schema",
                schema,
                *map(str, files),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ok -- validation done" in result.stdout


def test_zizmor_finds_nothing() -> None:
    zizmor = BIN / "zizmor"
    assert zizmor.is_file(), f"{zizmor} missing: pip install -e '.[dev]'"
    result = subprocess.run(
        [
            str(zizmor),
            "--offline",
            "--no-config",
            "--no-ignores",  # a silenced finding is still a finding
            "--no-progress",
            "--format",
            "plain",
            *map(str, WORKFLOW_FILES),
            str(GITHUB / "dependabot.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


# --- hardening --------------------------------------------------------------------------------

USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<comment>.*)$")


def uses_lines() -> Iterator[tuple[str, int, str, str]]:
    for path in WORKFLOW_FILES:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = USES.match(line)
            if match:
                yield path.name, lineno, match["ref"], match["comment"]


def test_every_action_is_pinned_to_a_full_commit_sha_with_its_version() -> None:
    pins: dict[str, set[str]] = {}
    found = list(uses_lines())
    assert len(found) >= 8
    for file, lineno, ref, comment in found:
        where = f"{file}:{lineno}: {ref}"
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{where}: not pinned by SHA"
        assert re.fullmatch(r"\s+# v\d+\.\d+\.\d+\b.*", comment), f"{where}: no '# vX.Y.Z'"
        action, sha = ref.split("@")
        pins.setdefault(action, set()).add(f"{sha}{comment.strip()}")
    drifted = {action: shas for action, shas in pins.items() if len(shas) > 1}
    assert not drifted, f"one action, several pins: {drifted}"


def test_permissions_are_empty_by_default_and_granted_per_job() -> None:
    for name in NAMES:
        workflow = load(name)
        assert workflow.get("permissions") == {}, f"{name}: top-level permissions must be {{}}"
        for job_id, job in jobs(name):
            perms = job.get("permissions")
            assert isinstance(perms, dict), f"{name}/{job_id}: no job-level permissions"
            assert perms.get("contents") == "read" or (name, job_id) in ALLOWED_WRITES
            writes = {scope for scope, level in perms.items() if level == "write"}
            assert writes == ALLOWED_WRITES.get((name, job_id), set()), f"{name}/{job_id}"
        assert "write-all" not in (WORKFLOW_DIR / f"{name}.yml").read_text(encoding="utf-8")


def test_every_job_has_a_timeout_and_checkouts_keep_no_credentials() -> None:
    checkouts = 0
    for name in NAMES:
        for job_id, job in jobs(name):
            timeout = job.get("timeout-minutes")
            assert isinstance(timeout, int), f"{name}/{job_id}: no timeout-minutes"
            assert 0 < timeout <= 60
            for step in steps(job):
                if str(step.get("uses", "")).startswith("actions/checkout@"):
                    checkouts += 1
                    assert step.get("with", {}).get("persist-credentials") is False, (
                        f"{name}/{job_id}: checkout keeps credentials"
                    )
    assert checkouts >= 5


SECRET_USE = re.compile(r"\$\{?(" + "|".join(SECRET_NAMES) + r")\b")
EMPTINESS_TEST = re.compile(r'\[ -[zn] "\$(' + "|".join(SECRET_NAMES) + r')" \]')


def test_secrets_reach_steps_only_through_env_and_are_never_printed() -> None:
    for name in NAMES:
        for script in run_scripts(name):
            # Expressions expanded into a script are code injection waiting to happen.
            assert "${{" not in script, f"{name}: an expression expanded into a script"
            # The only use of a secret variable in a script: testing whether it is set.
            leftover = EMPTINESS_TEST.sub("", script)
            assert not SECRET_USE.search(leftover), f"{name}: script reads a secret: {script!r}"


# --- structure --------------------------------------------------------------------------------


def test_ci_runs_make_test_on_every_supported_python_with_the_sandbox_binaries() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    minimum = re.search(r'requires-python = ">=3\.(\d+)"', pyproject)
    assert minimum is not None
    (_, job), *others = jobs("ci")
    assert not others
    pythons = job["strategy"]["matrix"]["python"]
    assert pythons[0] == f"3.{minimum[1]}"
    assert {"3.11", "3.12", "3.13"} <= set(pythons)
    install = steps(job)[step_index(job, r"apt-get install")]["run"]
    assert all(pkg in install for pkg in ("postgresql", "redis-server", "caddy"))
    assert step_index(job, r"apt-get install") < step_index(job, r"^make test$")
    on = triggers(load("ci"))
    assert "pull_request" in on
    assert "push" in on


def test_deploy_runs_the_same_checks_then_up_then_verify_with_wait() -> None:
    deploy = load("deploy")
    assert triggers(deploy) == {"push": {"branches": ["main"]}}
    checks, job = deploy["jobs"]["checks"], deploy["jobs"]["deploy"]
    ci_job = load("ci")["jobs"]["test"]
    for key in ("strategy", "steps", "runs-on", "timeout-minutes"):
        assert checks[key] == ci_job[key], f"deploy.yml checks.{key} differs from ci.yml test"

    assert job["needs"] == "checks"
    assert environment_name(job) == "production"
    assert job["concurrency"]["cancel-in-progress"] is False
    up = step_index(job, r'^koinonia-infra up --stack "\$STACK" --yes( --skip-verify)?$')
    verify = step_index(job, r"^koinonia-infra verify .*--wait 600 .*--report signoff\.md$")
    assert up < verify
    assert job["env"]["STACK"] == "prod"
    summary = step_index(job, r"signoff\.md >> \"\$GITHUB_STEP_SUMMARY\"")
    upload = [s for s in steps(job) if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert summary > verify
    assert [s["with"]["path"] for s in upload] == ["signoff.md"]
    # A failed verify must still publish its report.
    assert all("!cancelled()" in s["if"] for s in (steps(job)[summary], *upload))


def test_preview_runs_only_on_pull_requests_and_says_why_a_fork_gets_none() -> None:
    preview = load("preview")
    on = triggers(preview)
    assert list(on) == ["pull_request"]
    assert {"Pulumi.*.yaml", "koinonia_infra/**", "stacks/**", "policy/**"} <= set(
        on["pull_request"]["paths"]
    )
    (_, job), *others = jobs("preview")
    assert not others
    assert environment_name(job) is None  # no approval gate in front of a read-only preview
    access = steps(job)[0]
    assert job["env"]["HEAD_REPO"] == "${{ github.event.pull_request.head.repo.full_name }}"
    assert '"$HEAD_REPO" != "$GITHUB_REPOSITORY"' in access["run"]
    assert "comes from a fork" in access["run"]
    assert "GITHUB_STEP_SUMMARY" in access["run"]
    for step in steps(job)[1:]:
        assert "steps.access.outputs.ready == 'true'" in step["if"], step.get("name")
    step_index(job, r"koinonia-infra preview --stack \"\$STACK\" --format json")
    step_index(job, r"python scripts/pr_comment\.py")
    step_index(job, r"issues/comments/\$comment_id")  # updates the existing comment in place
    assert job["env"]["STACK"] == "prod"


def test_rollback_is_manual_validated_and_guarded_by_the_production_environment() -> None:
    rollback = load("rollback")
    on = triggers(rollback)
    assert list(on) == ["workflow_dispatch"]
    assert on["workflow_dispatch"]["inputs"]["instance"]["required"] is True
    job = rollback["jobs"]["rollback"]
    assert environment_name(job) == "production"
    assert job["concurrency"] == load("deploy")["jobs"]["deploy"]["concurrency"]
    assert job["env"]["INSTANCE"] == "${{ inputs.instance }}"
    validate = step_index(job, r"=~ \^\[1-9\]")
    destroy = step_index(job, r'^koinonia-infra destroy-instance "\$INSTANCE" --stack .* --yes$')
    verify = step_index(job, r"^koinonia-infra verify .*--wait")
    assert validate < destroy < verify
    pull_request = rollback["jobs"]["pull-request"]
    assert pull_request["needs"] == "rollback"
    step_index(pull_request, r"gh pr create")


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("2", True), ("17", True), ("0", False), ("-1", False), ("2; rm -rf /", False), ("", False)],
)
def test_rollback_input_validation_accepts_only_an_instance_number(
    value: str, accepted: bool
) -> None:
    job = load("rollback")["jobs"]["rollback"]
    script = steps(job)[0]["run"]
    result = subprocess.run(
        ["bash", "-c", script],
        env={"INSTANCE": value, "GITHUB_REF": "refs/heads/main", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert (result.returncode == 0) is accepted, result.stdout
    if not accepted:
        assert "instance must be a whole number" in result.stdout


def test_rollback_refuses_to_run_from_another_branch() -> None:
    script = steps(load("rollback")["jobs"]["rollback"])[0]["run"]
    result = subprocess.run(
        ["bash", "-c", script],
        env={"INSTANCE": "2", "GITHUB_REF": "refs/heads/feature", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode != 0
    assert "run the rollback from main" in result.stdout


def test_the_pulumi_cli_installed_is_the_version_the_tool_pins() -> None:
    from koinonia_infra.engine import PULUMI_VERSION

    installs = [
        (name, step)
        for name in NAMES
        for _, job in jobs(name)
        for step in steps(job)
        if str(step.get("uses", "")).startswith("pulumi/actions@")
    ]
    assert {name for name, _ in installs} == {"preview", "deploy", "rollback"}
    for name, step in installs:
        assert "command" not in step["with"], f"{name}: pulumi/actions must only install the CLI"
        assert str(step["with"]["pulumi-version"]) == PULUMI_VERSION, name


# --- the commands the workflows call ----------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    workflow: str
    argv: tuple[str, ...]


# Where a command starts in the scripts: a line, `if`/`then`, `&&`, or a `$(…)` substitution.
COMMAND_START = re.compile(
    r"(?:^\s*|\$\(|&&\s*|\b(?:if|then)\s+)(?:[A-Z_]+=\S+\s+)*koinonia-infra\s+([^|;&>)]*)"
)


def invocations() -> list[Invocation]:
    """Every `koinonia-infra …` command line in the workflows, up to a pipe, redirect or `;`."""
    found = []
    for name in NAMES:
        for script in run_scripts(name):
            for line in script.replace("\\\n", " ").splitlines():
                for match in COMMAND_START.finditer(line):
                    found.append(Invocation(name, tuple(shlex.split(match[1]))))
    return found


def test_the_workflows_call_the_commands_this_test_checks() -> None:
    called = {(inv.workflow, inv.argv[0]) for inv in invocations()}
    assert called >= {
        ("preview", "preview"),
        ("preview", "plan"),
        ("deploy", "up"),
        ("deploy", "verify"),
        ("rollback", "destroy-instance"),
        ("rollback", "verify"),
    }
    # Every mention of a command is an invocation the parser found (none slipped through).
    from koinonia_infra.cli import app

    commands = "|".join(getattr(typer.main.get_command(app), "commands", {}))
    mentioned = sum(
        len(re.findall(rf"\bkoinonia-infra\s+(?:{commands})\b", script))
        for name in NAMES
        for script in run_scripts(name)
    )
    assert len(invocations()) == mentioned


def _choices(param: Any) -> list[str] | None:
    """An option's accepted values, if it has a fixed set (click's and typer's spellings)."""
    for holder in (getattr(param, "type", None), getattr(param, "type_descriptor", None)):
        choices = getattr(holder, "choices", None)
        if choices:
            return [str(getattr(choice, "value", choice)) for choice in choices]
    return None


@pytest.mark.parametrize("invocation", invocations(), ids=lambda inv: " ".join(inv.argv))
def test_commands_called_by_the_workflows_exist_with_those_flags(invocation: Invocation) -> None:
    from koinonia_infra.cli import app

    # typer ships its own click: the command tree is inspected by attribute, not by class.
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    args = list(invocation.argv)
    while args and args[0] in getattr(command, "commands", {}):
        path.append(args.pop(0))
        command = command.commands[path[-1]]
    name = " ".join(path)
    assert path, f"{invocation.workflow}: no command {invocation.argv[0]!r}"
    assert not hasattr(command, "commands"), f"{name} needs a subcommand"

    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output

    options = {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    positional = 0
    while args:
        token = args.pop(0)
        if not token.startswith("-"):
            positional += 1
            continue
        flag, _, inline = token.partition("=")
        param = options.get(flag)
        assert param is not None, f"{name}: no option {flag} ({invocation.workflow})"
        assert flag in result.output, f"{flag} missing from `{name} --help`"
        if not getattr(param, "is_flag", False):
            value = inline or args.pop(0)
            choices = _choices(param)
            if choices is not None and not value.startswith("$"):
                assert value in choices, f"{name} {flag} {value}: not one of {choices}"
    required = sum(1 for p in arguments if p.required)
    assert required <= positional <= len(arguments), f"{name}: {positional} arguments"


@pytest.mark.parametrize(
    ("name", "job_id"), [("preview", "preview"), ("deploy", "deploy"), ("rollback", "rollback")]
)
def test_the_tool_is_installed_into_the_venv_pulumi_yaml_names_before_it_runs(
    name: str, job_id: str
) -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    venv = project["runtime"]["options"]["virtualenv"]
    job = load(name)["jobs"][job_id]
    install = step_index(job, rf"python -m venv {re.escape(venv)}\n")
    assert f"{venv}/bin" in steps(job)[install]["run"]
    first_call = min(
        i for i, s in enumerate(steps(job)) if re.search(r"koinonia-infra ", str(s.get("run", "")))
    )
    assert install < first_call
