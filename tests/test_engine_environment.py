"""What the Pulumi engine loads in CI is installed by the workflows that run it.

The engine runs the program (`stacks/`) with the venv named in Pulumi.yaml and the policy pack
(`policy/`) with the venv named in PulumiPolicy.yaml: both are the project's `.venv`, filled by
each workflow's `pip install` step. A module the program or the pack imports that the install
leaves out fails every preview, up and rollback in CI, and nothing else would notice.

Two checks: a static one (always) resolves each workflow's install command against pyproject and
the installed metadata and walks the imports of the program and the pack; an integration one
runs each distinct install command into a clean venv and imports those modules there.
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
from pathlib import Path

import pytest
import yaml
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


def engine_jobs() -> list[tuple[str, str, list[str]]]:
    """(workflow, job, pip install specs) of every job that runs the engine on the project."""
    found = []
    for workflow, job, scripts in _jobs():
        text = "\n".join(scripts)
        if not ENGINE_COMMANDS.search(text):
            continue
        specs = []
        for match in PIP_INSTALL.finditer(text):
            args = [a for a in shlex.split(match.group(1)) if not a.startswith("-")]
            specs.extend(args)
        found.append((workflow, job, specs))
    return found


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


@pytest.mark.parametrize(("workflow", "job", "specs"), engine_jobs(), ids=str)
def test_each_engine_job_installs_what_the_program_and_the_policy_pack_import(
    workflow: str, job: str, specs: list[str]
) -> None:
    project_specs = [e for e in (_extras(s) for s in specs) if e is not None]
    assert project_specs, f"{workflow} job {job}: runs the engine but installs no koinonia-infra"
    extras = set().union(*project_specs)
    installed = _closure(_project_requirements(extras))
    providers = md.packages_distributions()
    for module, importer in sorted(imported_top_levels().items()):
        dists = {_norm(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported by {importer}) is not installed here at all"
        assert dists & installed, (
            f"{workflow} job {job}: `pip install {' '.join(specs)}` does not install {module} "
            f"(imported by {importer}; from {', '.join(sorted(dists))})"
        )


@pytest.mark.integration
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "spec", sorted({s for _, _, specs in engine_jobs() for s in specs if _extras(s) is not None})
)
def test_a_clean_venv_from_the_workflow_install_imports_the_program_and_the_pack(
    spec: str, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # A copy of the sources as a checkout has them: the build writes into its tree.
    source = tmp_path / "checkout"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*COPY_IGNORE))
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", spec],
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
