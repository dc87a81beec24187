"""The delivery pipeline in .github/: linted, hardened, and calling commands that exist."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
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
NAMES = ("ci", "preview", "deploy", "rollback", "monitor")
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
    ("monitor", "monitor"): {"issues"},
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


@dataclass(frozen=True)
class StepRun:
    returncode: int
    stdout: str
    outputs: dict[str, str]
    summary: str


def run_step(script: str, env: dict[str, str], tmp_path: Path) -> StepRun:
    """A `run:` script executed as a runner does (bash -eo pipefail), with its output files."""
    (tmp_path / "step.sh").write_text(script, encoding="utf-8")
    output, summary = tmp_path / "github_output", tmp_path / "step_summary"
    output.write_text("")
    summary.write_text("")
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(tmp_path / "step.sh")],
        env={
            "PATH": "/usr/bin:/bin",
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(summary),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return StepRun(result.returncode, result.stdout + result.stderr, outputs, summary.read_text())


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


SECRET_EXPRESSION = re.compile(r"\$\{\{\s*(?:secrets\.|github\.token\b)")


def test_secrets_and_the_token_go_only_to_the_run_steps_that_use_them() -> None:
    """Not to a whole job (its installs and third-party actions) and never as an action input."""
    for name in NAMES:
        workflow = load(name)
        assert not SECRET_EXPRESSION.search(json.dumps(workflow.get("env", {}))), name
        for job_id, job in jobs(name):
            where = f"{name}/{job_id}"
            assert not SECRET_EXPRESSION.search(json.dumps(job.get("env", {}))), where
            for step in steps(job):
                assert not SECRET_EXPRESSION.search(json.dumps(step.get("with", {}))), where
                if SECRET_EXPRESSION.search(json.dumps(step.get("env", {}))):
                    assert "run" in step, f"{where}: secrets handed to {step.get('uses')}"
    text = "".join(path.read_text(encoding="utf-8") for path in WORKFLOW_FILES)
    assert len(SECRET_EXPRESSION.findall(text)) >= 15  # the scan above saw them


def test_dependabot_updates_the_python_dependencies_and_the_pinned_actions() -> None:
    config = yaml.safe_load((GITHUB / "dependabot.yml").read_text(encoding="utf-8"))
    updates = {u["package-ecosystem"]: u for u in config["updates"]}
    # uv: pyproject.toml and the hash locks compiled by `uv pip compile` (requirements/*.in).
    assert set(updates) == {"uv", "github-actions"}
    for update in updates.values():
        assert update["directory"] == "/"
        assert update["schedule"]["interval"] in {"daily", "weekly"}


# --- structure --------------------------------------------------------------------------------


def test_ci_runs_make_test_on_every_supported_python_with_the_sandbox_binaries() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    minimum = re.search(r'requires-python = ">=3\.(\d+)"', pyproject)
    assert minimum is not None
    job = load("ci")["jobs"]["test"]
    assert set(load("ci")["jobs"]) == {"test", "engine-preview"}
    pythons = job["strategy"]["matrix"]["python"]
    assert pythons[0] == f"3.{minimum[1]}"
    assert {"3.11", "3.12", "3.13"} <= set(pythons)
    install = steps(job)[step_index(job, r"apt-get install")]["run"]
    assert all(pkg in install for pkg in ("postgresql", "redis-server", "caddy"))
    assert step_index(job, r"apt-get install") < step_index(job, r"^make test$")
    on = triggers(load("ci"))
    assert "pull_request" in on
    assert "push" in on


def test_the_docs_name_the_status_checks_ci_really_reports() -> None:
    """Branch protection requires checks by name: a renamed job would block every merge."""
    job = load("ci")["jobs"]["test"]
    doc = (ROOT / "docs" / "ci-cd.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(make test \(Python [\d.]+\))`", doc))
    names = {
        job["name"].replace("${{ matrix.python }}", v) for v in job["strategy"]["matrix"]["python"]
    }
    assert documented == names


def test_ci_runs_the_real_engine_tests_with_the_pinned_cli_and_no_skip() -> None:
    job = load("ci")["jobs"]["test"]
    install = [
        i for i, s in enumerate(steps(job)) if str(s.get("uses", "")).startswith("pulumi/actions@")
    ]
    make_test = step_index(job, r"^make test$")
    assert len(install) == 1
    assert install[0] < make_test
    assert steps(job)[make_test]["env"]["KOINONIA_REQUIRE_ENGINE"] == "1"


def test_ci_previews_this_project_with_the_real_engine_installed_as_deploy_installs_it() -> None:
    job = load("ci")["jobs"]["engine-preview"]
    deploy_job = load("deploy")["jobs"]["deploy"]
    install = steps(job)[step_index(job, r"pip install")]["run"]
    deploy_install = steps(deploy_job)[step_index(deploy_job, r"pip install")]["run"]
    pip = re.compile(r"pip install [^\n]+")
    assert pip.findall(install) == pip.findall(deploy_install)
    engine = [
        i for i, s in enumerate(steps(job)) if str(s.get("uses", "")).startswith("pulumi/actions@")
    ]
    preview = step_index(job, r"^scripts/engine-preview\.sh prod$")
    assert len(engine) == 1
    assert step_index(job, r"pip install") < preview
    assert engine[0] < preview
    # No real credential reaches it: the backend is a throwaway file backend.
    assert "secrets." not in json.dumps(job)


def test_the_engine_preview_script_uses_a_throwaway_backend_and_keeps_secrets_off_argv() -> None:
    script = (ROOT / "scripts" / "engine-preview.sh").read_text(encoding="utf-8")
    assert 'PULUMI_BACKEND_URL="file://$state"' in script
    assert "trap 'rm -rf" in script
    # Secret placeholders go to `pulumi config set` through stdin, never as an argument.
    config_set = [line for line in script.splitlines() if "config set" in line]
    assert config_set
    assert all(line.lstrip().startswith("printf") and "| pulumi config set" in line
               for line in config_set)  # fmt: skip
    assert "koinonia-infra preview --stack" in script
    assert (ROOT / "policy" / "PulumiPolicy.yaml").is_file()
    # What cannot run without Render is named in the job's output.
    assert "Not run here, because each needs a Render account" in script
    result = subprocess.run(["bash", "-n", str(ROOT / "scripts" / "engine-preview.sh")],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_real_engine_test_fails_instead_of_skipping_when_ci_requires_it(
    tmp_path: Path,
) -> None:
    """What KOINONIA_REQUIRE_ENGINE=1 buys in ci.yml: a runner without the CLI goes red."""
    REAL = str(ROOT / "tests" / "engine" / "test_engine_real.py")
    env = {
        **os.environ,
        "PATH": str(tmp_path),  # no `pulumi` here
        "XDG_DATA_HOME": str(tmp_path),  # and no pinned install
        "KOINONIA_REQUIRE_ENGINE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "engine", REAL],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "KOINONIA_REQUIRE_ENGINE=1 but no `pulumi` binary" in result.stdout
    assert "skipped" not in result.stdout


def test_deploy_runs_the_same_checks_then_up_then_verify_with_wait() -> None:
    deploy = load("deploy")
    assert triggers(deploy) == {"push": {"branches": ["main"]}}
    checks, job = deploy["jobs"]["checks"], deploy["jobs"]["deploy"]
    ci_job = load("ci")["jobs"]["test"]
    for key in sorted(checks.keys() | ci_job.keys()):
        assert checks.get(key) == ci_job.get(key), f"deploy.yml checks.{key} differs from ci.yml"

    assert job["needs"] == "checks"
    assert environment_name(job) == "production"
    assert job["concurrency"]["group"]
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
    infrastructure = {"Pulumi.yaml", "Pulumi.*.yaml", "koinonia_infra/**", "stacks/**", "policy/**"}
    assert infrastructure <= set(on["pull_request"]["paths"])
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


PREVIEW_SECRETS = {
    "PULUMI_ACCESS_TOKEN": "pul-token-value",
    "PULUMI_BACKEND_URL": "",
    "RENDER_API_KEY": "rnd-key-value",
}


@pytest.mark.parametrize(
    ("head_repo", "secrets", "reason"),
    [
        ("someone/fork", PREVIEW_SECRETS, "comes from a fork (someone/fork)"),
        ("org/app", {}, "neither PULUMI_ACCESS_TOKEN nor PULUMI_BACKEND_URL is set"),
        ("org/app", {**PREVIEW_SECRETS, "RENDER_API_KEY": ""}, "RENDER_API_KEY repository secret"),
        ("org/app", {"PULUMI_BACKEND_URL": "s3://b", "RENDER_API_KEY": "k" * 8}, None),
        ("org/app", PREVIEW_SECRETS, None),
    ],
)
def test_preview_says_why_it_cannot_run_and_ends_green(
    head_repo: str, secrets: dict[str, str], reason: str | None, tmp_path: Path
) -> None:
    access = steps(load("preview")["jobs"]["preview"])[0]
    assert set(access["env"]) <= set(SECRET_NAMES)
    env = {"HEAD_REPO": head_repo, "GITHUB_REPOSITORY": "org/app", **secrets}
    result = run_step(access["run"], env, tmp_path)

    assert result.returncode == 0, result.stdout
    assert result.outputs == {"ready": "false" if reason else "true"}
    if reason is None:
        assert result.summary == ""
    else:
        assert "::notice title=Preview skipped::" in result.stdout
        assert result.summary.startswith("### Preview skipped")
        assert reason in result.summary
    for value in secrets.values():
        if value:
            assert value not in result.stdout + result.summary


def _fake_gh(tmp_path: Path, comments: list[dict[str, Any]]) -> Path:
    """A `gh` that serves `comments` through the real jq and logs every call with its body."""
    jq = shutil.which("jq")
    if jq is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("jq is missing (GitHub's runners have it)")
        pytest.skip("jq is missing")
    (tmp_path / "comments.json").write_text(json.dumps(comments))
    gh = tmp_path / "bin" / "gh"
    gh.parent.mkdir()
    gh.write_text(
        f"""#!{sys.executable}
import json, subprocess, sys
args = sys.argv[1:]
body = next((a[len("body=@"):] for a in args if a.startswith("body=@")), None)
with open({str(tmp_path / "gh.log")!r}, "a") as log:
    log.write(json.dumps({{"args": args, "body": body and open(body).read()}}) + "\\n")
if "--jq" in args:
    with open({str(tmp_path / "comments.json")!r}) as page:
        out = subprocess.run([{jq!r}, "-r", args[args.index("--jq") + 1]], stdin=page,
                             capture_output=True, text=True, check=True).stdout
    sys.stdout.write(out)
""",
        encoding="utf-8",
    )
    gh.chmod(0o755)
    return gh


def _marker() -> str:
    found = re.search(r'^MARKER = "(.+)"$', (ROOT / "scripts" / "pr_comment.py").read_text(), re.M)
    assert found is not None
    return found[1]


@pytest.mark.parametrize(
    ("comments", "expected"),
    [
        ([], ("POST", "repos/org/app/issues/7/comments")),
        (
            [
                {"id": 11, "user": {"login": "someone"}, "body": "{marker}\nquoted by a human"},
                {"id": 12, "user": {"login": "github-actions[bot]"}, "body": "another bot note"},
                {"id": 13, "user": {"login": "github-actions[bot]"}, "body": "{marker}\nold"},
                {"id": 14, "user": {"login": "github-actions[bot]"}, "body": "{marker}\nrace"},
            ],
            ("PATCH", "repos/org/app/issues/comments/13"),
        ),
    ],
    ids=["first-run-posts", "later-runs-update-the-bot-comment"],
)
def test_preview_keeps_one_comment_and_updates_it_in_place(
    comments: list[dict[str, Any]], expected: tuple[str, str], tmp_path: Path
) -> None:
    marker = _marker()
    served = [{**c, "body": c["body"].replace("{marker}", marker)} for c in comments]
    gh = _fake_gh(tmp_path, served)
    job = load("preview")["jobs"]["preview"]
    post = steps(job)[step_index(job, r"gh api --method PATCH")]
    body = f"{marker}\n## koinonia-infra preview\n"
    (tmp_path / "comment.md").write_text(body)
    env = {
        "PATH": f"{gh.parent}:/usr/bin:/bin",
        "GITHUB_REPOSITORY": "org/app",
        "PR_NUMBER": "7",
        "RUNNER_TEMP": str(tmp_path),
        "GH_TOKEN": "ghs_fake",
    }
    result = run_step(post["run"], env, tmp_path)

    assert result.returncode == 0, result.stdout
    calls = [json.loads(line) for line in (tmp_path / "gh.log").read_text().splitlines()]
    assert "--paginate" in calls[0]["args"]
    writes = [(c["args"][c["args"].index("--method") + 1], c) for c in calls[1:]]
    assert [(method, c["args"][3]) for method, c in writes] == [expected]
    assert writes[0][1]["body"] == body


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
    # The edited stack file travels as an artifact, also when verify failed (the instance is gone).
    uploads = [s for s in steps(job) if str(s.get("uses", "")).startswith("actions/upload-art")]
    downloads = [s for s in steps(pull_request) if "download-artifact" in str(s.get("uses"))]
    assert downloads[0]["with"]["name"] in {s["with"]["name"] for s in uploads}
    assert "!cancelled()" in pull_request["if"]
    assert "needs.rollback.outputs.changed == 'true'" in pull_request["if"]
    commit = steps(pull_request)[step_index(pull_request, r"/contents/\$file")]["run"]
    assert 'file="Pulumi.$STACK.yaml"' in commit
    step_index(pull_request, r"gh pr create")


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("2", True), ("17", True), ("0", False), ("-1", False), ("2; rm -rf /", False), ("", False)],
)
def test_rollback_input_validation_accepts_only_an_instance_number(
    value: str, accepted: bool, tmp_path: Path
) -> None:
    script = steps(load("rollback")["jobs"]["rollback"])[0]["run"]
    result = run_step(script, {"INSTANCE": value, "GITHUB_REF": "refs/heads/main"}, tmp_path)
    assert (result.returncode == 0) is accepted, result.stdout
    if not accepted:
        assert "instance must be a whole number" in result.stdout


def test_rollback_refuses_to_run_from_another_branch(tmp_path: Path) -> None:
    script = steps(load("rollback")["jobs"]["rollback"])[0]["run"]
    result = run_step(script, {"INSTANCE": "2", "GITHUB_REF": "refs/heads/feature"}, tmp_path)
    assert result.returncode != 0
    assert "run the rollback from main" in result.stdout


def test_the_pulumi_cli_installed_is_the_version_the_tool_pins() -> None:
    from koinonia_infra.deploy.engine import PULUMI_VERSION

    installs = [
        (name, step)
        for name in NAMES
        for _, job in jobs(name)
        for step in steps(job)
        if str(step.get("uses", "")).startswith("pulumi/actions@")
    ]
    assert {name for name, _ in installs} == {"ci", "preview", "deploy", "rollback", "monitor"}
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


# The installs of the tool into the project's venv: the hash lock, then the project alone.
LOCKED_INSTALL = [
    "pip install --quiet --require-hashes -r requirements/runtime.txt",
    "pip install --quiet --no-deps .",
]


@pytest.mark.parametrize(
    ("name", "job_id"),
    [
        ("ci", "engine-preview"),
        ("preview", "preview"),
        ("deploy", "deploy"),
        ("rollback", "rollback"),
        ("monitor", "monitor"),
    ],
)
def test_the_tool_is_installed_from_the_hash_lock_and_nothing_is_resolved_again(
    name: str, job_id: str
) -> None:
    job = load(name)["jobs"][job_id]
    script = str(steps(job)[step_index(job, r"pip install")]["run"])
    assert re.findall(r"pip install [^\n]+", script) == LOCKED_INSTALL
    assert (ROOT / "requirements" / "runtime.txt").is_file()


def test_no_workflow_installs_anything_unlocked() -> None:
    """Every pip install in the pipeline is the lock with hashes, the project with --no-deps,
    or `make` (which installs from requirements/dev.txt the same way)."""
    for name in NAMES:
        for script in run_scripts(name):
            for command in re.findall(r"pip install [^\n]+", script):
                assert command in LOCKED_INSTALL, f"{name}.yml: {command}"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    installs = re.findall(r"pip install [^\n]+", makefile)
    assert "pip install --quiet --require-hashes -r requirements/dev.txt" in installs
    assert "pip install --quiet --no-deps -e ." in installs
    assert [i for i in installs if "-r " not in i and "--no-deps" not in i] == [
        "pip install --quiet --upgrade pip"
    ]


@pytest.mark.parametrize(
    ("name", "job_id"),
    [
        ("preview", "preview"),
        ("deploy", "deploy"),
        ("rollback", "rollback"),
        ("monitor", "monitor"),
    ],
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
