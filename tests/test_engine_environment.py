"""What the Pulumi engine loads in CI is installed by the workflows that run it.

The engine runs the program (`stacks/`) with the venv named in Pulumi.yaml and the policy pack
(`policy/`) with the venv named in PulumiPolicy.yaml: both are the project's `.venv`, filled by
each workflow's `pip install` step. A module the program or the pack imports that the install
leaves out fails every preview, up and rollback in CI, and nothing else would notice.

Two checks: a static one (always) resolves each workflow's install commands (a hash lock with
`-r requirements/runtime.txt`: exactly its pins; the project with `--no-deps`: nothing more;
the project without it: pyproject's requirements and their installed metadata) and walks the
imports of the program and the pack; an integration one runs each distinct sequence of install
commands into a clean venv, exactly as the workflow does, and imports those modules there.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from lockfiles import lock_pins
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
ENTRY_POINTS = (ROOT / "stacks" / "__main__.py", ROOT / "policy" / "__main__.py")
# Commands that start the engine on the project (and so load the program and the policy pack).
ENGINE_COMMANDS = re.compile(r"koinonia-infra\s+(preview|up|destroy-instance)\b|engine-preview")
PIP_INSTALL = re.compile(r"pip install ([^\n]+)")
OWN_MODULES = ("koinonia_infra.policy_rules", "koinonia_infra.program")
COPY_IGNORE = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")


def _jobs() -> Iterator[tuple[str, str, list[str]]]:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for name, job in data.get("jobs", {}).items():
            scripts = [str(s["run"]) for s in job.get("steps", []) if "run" in s]
            yield path.name, name, scripts


@dataclass(frozen=True)
class Install:
    """One `pip install` command line of a workflow, read as pip reads its arguments."""

    args: tuple[str, ...]

    @property
    def requirement_files(self) -> list[str]:
        return [v for o, v in zip(self.args, self.args[1:], strict=False)
                if o in ("-r", "--requirement")]  # fmt: skip

    @property
    def specs(self) -> list[str]:
        """What is named to install: the arguments that are neither options nor their values."""
        taking_value = {"-r", "--requirement", "-c", "--constraint", "-i", "--index-url"}
        found, skip = [], False
        for arg in self.args:
            if skip:
                skip = False
            elif arg in taking_value:
                skip = True
            elif not arg.startswith("-"):
                found.append(arg)
        return found

    @property
    def no_deps(self) -> bool:
        return "--no-deps" in self.args

    def __str__(self) -> str:
        return "pip install " + " ".join(self.args)


def engine_jobs() -> list[tuple[str, str, list[Install]]]:
    """(workflow, job, its pip install commands in order) of every job that runs the engine on
    the project."""
    found = []
    for workflow, job, scripts in _jobs():
        text = "\n".join(scripts)
        if not ENGINE_COMMANDS.search(text):
            continue
        installs = [Install(tuple(shlex.split(m.group(1)))) for m in PIP_INSTALL.finditer(text)]
        found.append((workflow, job, installs))
    return found


def installed_by(installs: list[Install]) -> tuple[set[str], bool]:
    """(distributions these commands install, whether one of them installs this project)."""
    dists: set[str] = set()
    project = False
    for install in installs:
        for lock in install.requirement_files:
            # pip takes nothing beyond the lock's pins under --require-hashes (or with hashes).
            dists |= set(lock_pins(ROOT / lock))
        for spec in install.specs:
            extras = _extras(spec)
            if extras is None:
                dists |= _closure([Requirement(spec)])
                continue
            project = True
            if not install.no_deps:
                dists |= _closure(_project_requirements(extras))
    return dists, project


def _extras(spec: str) -> set[str] | None:
    """The extras of a spec that installs this project (`.`, `.[x]`, `-e .`), else None."""
    match = re.fullmatch(r"\.(?:\[([A-Za-z0-9_,\- ]+)\])?", spec)
    if match is None:
        return None
    return {e.strip() for e in (match.group(1) or "").split(",") if e.strip()}


def _project_requirements(extras: set[str]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in project.get("optional-dependencies", {})[extra]]
    return reqs


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(reqs: list[Requirement]) -> set[str]:
    """Distributions `reqs` pull in, read from the metadata of this (dev) environment."""
    seen: set[str] = set()
    todo = list(reqs)
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue
        for child in dist.requires or []:
            child_req = Requirement(child)
            if child_req.marker is None or child_req.marker.evaluate({"extra": ""}):
                todo.append(child_req)
    return seen


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_top_levels() -> dict[str, str]:
    """Top-level third-party modules imported by the program and the pack, directly or through
    koinonia_infra (every import, also those inside functions), mapped to one importer."""
    found: dict[str, str] = {}
    todo = [(p, p.relative_to(ROOT).as_posix()) for p in ENTRY_POINTS]
    seen: set[Path] = set()
    while todo:
        path, label = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                top = name.split(".")[0]
                if top == "koinonia_infra":
                    module_file = _module_file(name)
                    if module_file is not None:
                        todo.append((module_file, module_file.relative_to(ROOT).as_posix()))
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, label)
    return found


def test_the_engine_jobs_are_found() -> None:
    jobs = {(w, j) for w, j, _ in engine_jobs()}
    assert {("preview.yml", "preview"), ("deploy.yml", "deploy")} <= jobs
    assert any(w == "rollback.yml" for w, _ in jobs)
    assert any(w == "ci.yml" for w, _ in jobs), "the real-engine preview job"


def test_the_policy_pack_and_the_program_import_third_party_modules() -> None:
    modules = imported_top_levels()
    assert {"pulumi", "pulumi_render", "pulumi_policy", "pydantic"} <= set(modules)


def test_an_install_from_the_lock_is_read_as_its_pins_and_the_project_alone() -> None:
    lock = Install(("--quiet", "--require-hashes", "-r", "requirements/runtime.txt"))
    project = Install(("--quiet", "--no-deps", "."))
    assert lock.requirement_files == ["requirements/runtime.txt"]
    assert lock.specs == []
    assert project.specs == ["."]
    assert project.no_deps
    dists, has_project = installed_by([lock, project])
    assert has_project
    assert dists == set(lock_pins(ROOT / "requirements" / "runtime.txt"))
    assert {"pulumi", "pulumi-policy", "pydantic"} <= dists
    # The project alone brings nothing: without the lock not even pulumi is there.
    assert installed_by([project]) == (set(), True)


@pytest.mark.parametrize(("workflow", "job", "installs"), engine_jobs(), ids=str)
def test_each_engine_job_installs_what_the_program_and_the_policy_pack_import(
    workflow: str, job: str, installs: list[Install]
) -> None:
    installed, project = installed_by(installs)
    assert project, f"{workflow} job {job}: runs the engine but installs no koinonia-infra"
    commands = "; ".join(str(i) for i in installs)
    providers = md.packages_distributions()
    for module, importer in sorted(imported_top_levels().items()):
        dists = {_norm(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported by {importer}) is not installed here at all"
        assert dists & installed, (
            f"{workflow} job {job}: `{commands}` does not install {module} "
            f"(imported by {importer}; from {', '.join(sorted(dists))})"
        )


@pytest.mark.integration
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "installs",
    sorted({tuple(i.args for i in installs) for _, _, installs in engine_jobs()}),
    ids=lambda installs: " && ".join("pip install " + " ".join(a) for a in installs),
)
def test_a_clean_venv_from_the_workflow_install_imports_the_program_and_the_pack(
    installs: tuple[tuple[str, ...], ...], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # A copy of the sources as a checkout has them: the build writes into its tree.
    source = tmp_path / "checkout"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*COPY_IGNORE))
    for args in installs:  # each command of the workflow, in its order, from the checkout
        install = subprocess.run(
            [str(python), "-m", "pip", "install", *args],
            cwd=source,
            env=env,
            capture_output=True,
            text=True,
            timeout=840,
            check=False,
        )
        assert install.returncode == 0, install.stderr[-2000:]
    modules = sorted(imported_top_levels())
    # Importing policy/__main__.py itself would start the analyzer server and block.
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    probe = subprocess.run(
        [str(python), "-c", code, *modules, *OWN_MODULES],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
