"""`koinonia-infra --help` wall time ÷ a bare typer hello-world's `--help` (target ≤ 1.25), both
with typer's shell completion on (`--install-completion`, `--show-completion`).

    .venv/bin/python benchmarks/bench_help.py [--runs N]

Exits 1 when the target is missed. Both run with the same interpreter, so the ratio measures only
what the CLI imports on top of typer (pulumi must not be among it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _timing import PYTHON, medians, verdict

TARGET = 1.25
HELLO = """\
import typer

app = typer.Typer(add_completion=True)


@app.command()
def hello(name: str = "world") -> None:
    typer.echo(f"hello {name}")


app()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    # As installed: bytecode cached (the warm-up run writes it). Under PYTHONDONTWRITEBYTECODE
    # every run would compile the project's modules from source, a cost typer's own installed
    # modules never pay, and the ratio would measure that instead of the CLI.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        hello = Path(tmp) / "hello.py"
        hello.write_text(HELLO)
        times = medians(
            {
                "hello": ([PYTHON, str(hello), "--help"], env),
                "koinonia-infra": (
                    [PYTHON, "-c", "from koinonia_infra.cli import main; main()", "--help"],
                    env,
                ),
            },
            args.runs,
        )
    ratio = times["koinonia-infra"] / times["hello"]
    print(f"typer hello-world --help : {times['hello'] * 1000:7.1f} ms (median of {args.runs})")
    print(f"koinonia-infra --help    : {times['koinonia-infra'] * 1000:7.1f} ms")
    ok = ratio <= TARGET
    print(f"ratio                    : {ratio:7.2f}  (target ≤ {TARGET}) {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
