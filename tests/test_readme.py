"""The README's examples, run as written: extracted from README.md, so they cannot drift.

Every example runs against a fresh test database twice: with the local model, and as a newcomer
without Ollama has it (the default embedder, pointed at a loopback port where nothing listens).
Python blocks run as scripts. Shell blocks run command by command: every ``pgrecall`` command
(but those in ``SKIPPED_COMMANDS``), ``export`` and ``curl``; any other program must be listed
in ``SKIPPED_PROGRAMS`` with the reason it cannot run here, or the test fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SHELL_LANGUAGES = frozenset({"bash", "sh", "shell"})
PROGRAM_SECONDS = 120

SKIPPED_PROGRAMS = {
    "python3": "makes a virtual environment: minutes, not a test's work",
    "pip": "installs packages: minutes, not a test's work",
    "pytest": "the test suite itself",
    "ollama": "needs the Ollama binary and a model download",
    "docker": "needs a Docker engine; tests/test_compose.py checks the compose file",
    "claude": "needs Claude Code; tests/test_mcp.py runs pgrecall mcp and /mcp with the SDK",
}
SKIPPED_COMMANDS = {
    "pull": "downloads a model through a running Ollama",
    "worker": "runs until signalled; tests/test_durability.py stops one with SIGTERM",
}
# Settings whose README value is a stand-in for the reader's own: the test's values stay.
PLACEHOLDER_SETTINGS = {
    "PGRECALL_DATABASE_URL": "the reader's server; the test database stands in",
    "PGRECALL_OLLAMA_URL": "the reader's Ollama host; the configuration's URL stands in",
}
# What each configuration's run must print (stdout) for the examples of a section.
EXPECTED_OUTPUT = {
    ("Python", "local model"): ["Ada is allergic to peanuts."],
    ("Agents: MCP and LangGraph", "local model"): ["Ada is allergic to peanuts."],
    ("Python", "without Ollama"): [
        "keyword matches only: the embedder is not answering",
        "memories in scope are still pending",
    ],
    # Without Ollama the same answers come from the keyword ranking.
    ("Memories that change", "local model"): [
        "then: Ada lives in London.",
        "now: Ada lives in Paris.",
    ],
    ("Memories that change", "without Ollama"): [
        "then: Ada lives in London.",
        "now: Ada lives in Paris.",
    ],
}
# Commands that report a problem by their exit code in a configuration.
EXPECTED_EXIT = {("doctor", "without Ollama"): 1}
CONFIGURATIONS = ("local model", "without Ollama")


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    section: str
    language: str
    code: str
    line: int

    @property
    def label(self) -> str:
        return f"{self.section or 'top'}:{self.line}"


def readme_blocks() -> list[Block]:
    """Every fenced block, with the heading it sits under."""
    blocks: list[Block] = []
    section = ""
    fence: tuple[str, int, list[str]] | None = None
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), start=1):
        if fence is None:
            if line.startswith("```"):
                fence = (line[3:].strip(), number, [])
            elif line.startswith("## "):
                section = line[3:].strip()
        elif line.startswith("```"):
            language, start, body = fence
            blocks.append(Block(section, language, "\n".join(body) + "\n", start))
            fence = None
        else:
            fence[2].append(line)
    return blocks


PYTHON_BLOCKS = [block for block in readme_blocks() if block.language == "python"]
SHELL_BLOCKS = [block for block in readme_blocks() if block.language in SHELL_LANGUAGES]


@dataclass(frozen=True)
class Command:
    """One command of a shell block: its words, and whether it runs in the background."""

    words: tuple[str, ...]
    background: bool


def shell_commands(code: str) -> list[Command]:
    """Commands in order: continuations joined, comments dropped, ``&&`` and the README's
    several commands on one line (two or more spaces apart) split."""
    commands: list[Command] = []
    for line in code.replace("\\\n", " ").splitlines():
        for part in re.split(r"\s{2,}(?=pgrecall\s)", line):
            lexer = shlex.shlex(part, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words: list[str] = []
            for token in [*lexer, "&&"]:
                if token in ("&&", "&") and words:
                    commands.append(Command(tuple(words), background=token == "&"))
                    words = []
                elif token not in ("&&", "&"):
                    words.append(token)
    return commands


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(params=CONFIGURATIONS)
def reader(request: pytest.FixtureRequest, empty_dsn: str, tmp_path: Path) -> Iterator[Reader]:
    """A reader's shell: a fresh database, a working directory, one configuration."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PGRECALL_", "OLLAMA_"))}
    environment = {
        **clean,
        "PGRECALL_DATABASE_URL": empty_dsn,
        "PGRECALL_DATA_DIR": str(tmp_path / "data"),
    }
    if request.param == "local model":
        environment["PGRECALL_EMBEDDER"] = "local"
    else:
        environment["PGRECALL_OLLAMA_URL"] = f"http://127.0.0.1:{_closed_port()}"
    (tmp_path / "memories.jsonl").write_text(
        '{"content": "Ada takes the 8:15 train to work."}\n'
        '{"content": "Ada\'s manager is Charles.", "metadata": {"kind": "work"}}\n'
    )
    opened = Reader(str(request.param), environment, tmp_path)
    yield opened
    opened.stop_servers()


@dataclass
class Reader:
    """Runs commands as a reader would, in one configuration; keeps what later lines need."""

    configuration: str
    environment: dict[str, str]
    directory: Path
    memory_ids: list[str] = field(default_factory=list)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)
    api_port: int | None = None

    def run(self, command: Command) -> None:
        program = Path(command.words[0]).name  # .venv/bin/pgrecall is pgrecall
        if program == "export":
            self.export(command.words[1])
        elif program == "pgrecall":
            self.pgrecall(list(command.words[1:]), command.background)
        elif program == "curl":
            self.curl(list(command.words[1:]))
        elif program not in SKIPPED_PROGRAMS:
            pytest.fail(
                f"README command {shlex.join(command.words)!r}: run it here, or list "
                f"{program!r} in SKIPPED_PROGRAMS with the reason it cannot run"
            )

    def export(self, assignment: str) -> None:
        name, _, value = assignment.partition("=")
        if name not in PLACEHOLDER_SETTINGS:
            self.environment[name] = value

    def pgrecall(self, arguments: list[str], background: bool) -> None:
        if arguments[0] in SKIPPED_COMMANDS:
            return
        arguments = [self._filled(argument) for argument in arguments]
        if arguments[0] == "serve":
            assert background, "pgrecall serve runs in the foreground in the README"
            self._serve(arguments)
            return
        command = [sys.executable, "-m", "pgrecall.cli", *arguments]
        environment = self.environment
        if any(_is_operator(argument) for argument in arguments):
            # A pipe or a redirection: bash runs the line, with this environment's pgrecall (the
            # exit status is the last command's, as in a reader's shell; stderr tells the rest).
            line = " ".join(a if _is_operator(a) else shlex.quote(a) for a in arguments)
            command = ["bash", "-c", f"pgrecall {line}"]
            path = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
            environment = {**environment, "PATH": path}
        completed = subprocess.run(
            command,
            env=environment,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=PROGRAM_SECONDS,
            check=False,
        )
        shown = f"pgrecall {shlex.join(arguments)}\n{completed.stdout}\n{completed.stderr}"
        expected = EXPECTED_EXIT.get((arguments[0], self.configuration), 0)
        assert completed.returncode == expected, shown
        assert "Traceback" not in completed.stderr, shown
        if expected == 0:  # "error: ..." from pgrecall, an "Error" panel from a usage mistake
            assert "error" not in completed.stderr.lower(), shown
        if arguments[0] == "remember":
            self.memory_ids += [line for line in completed.stdout.split() if _is_uuid(line)]

    def _filled(self, argument: str) -> str:
        """The README's placeholders: ID (or ID...) is a memory remembered above; [--flag]
        is an optional flag, given."""
        if argument in ("ID", "ID..."):
            assert self.memory_ids, "the README uses an ID before remembering anything"
            return self.memory_ids[0]
        optional = re.fullmatch(r"\[(.+)\]", argument)
        return optional.group(1) if optional else argument

    def _serve(self, arguments: list[str]) -> None:
        self.api_port = _closed_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "pgrecall.cli", *arguments, "--port", str(self.api_port)],
            env=self.environment,
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.servers.append(server)
        deadline = time.monotonic() + PROGRAM_SECONDS
        while time.monotonic() < deadline:
            assert server.poll() is None, "pgrecall serve exited"
            try:
                if httpx.get(f"http://127.0.0.1:{self.api_port}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        pytest.fail(f"pgrecall serve did not answer within {PROGRAM_SECONDS} s")

    def curl(self, arguments: list[str]) -> None:
        assert shutil.which("curl"), "curl is not installed"
        assert self.api_port is not None, "the README calls curl before pgrecall serve"
        arguments = [a.replace("localhost:8080", f"127.0.0.1:{self.api_port}") for a in arguments]
        completed = subprocess.run(
            ["curl", "--max-time", str(PROGRAM_SECONDS), *arguments],
            capture_output=True,
            text=True,
            timeout=PROGRAM_SECONDS + 10,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        answer = json.loads(completed.stdout)
        assert "error" not in answer, answer

    def stop_servers(self) -> None:
        for server in self.servers:
            server.terminate()
            server.wait(timeout=30)


def _is_operator(word: str) -> bool:
    """A shell pipe or redirection token (``|``, ``>``, ``>>``, ``<``, ``>&``)."""
    return bool(word) and set(word) <= set("|<>&")


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def test_shell_lines_are_split_as_a_reader_types_them() -> None:
    code = (
        "python3 -m venv .venv && .venv/bin/pgrecall demo\n"
        'pgrecall list -n ada          pgrecall get ID     # a comment with "quotes"\n'
        "pgrecall serve &\n"
        "curl -s localhost:8080/x \\\n  -d '{\"a\": 1}'\n"
        "pgrecall recall 'two words' -n ada | head -3 > out.txt\n"
    )
    assert shell_commands(code) == [
        Command(("python3", "-m", "venv", ".venv"), background=False),
        Command((".venv/bin/pgrecall", "demo"), background=False),
        Command(("pgrecall", "list", "-n", "ada"), background=False),
        Command(("pgrecall", "get", "ID"), background=False),
        Command(("pgrecall", "serve"), background=True),
        Command(("curl", "-s", "localhost:8080/x", "-d", '{"a": 1}'), background=False),
        Command(
            ("pgrecall", "recall", "two words", "-n", "ada", "|", "head", "-3", ">", "out.txt"),
            background=False,
        ),
    ]


def test_the_readme_has_examples_to_run() -> None:
    sections = {block.section for block in PYTHON_BLOCKS + SHELL_BLOCKS}
    assert {"Python", "Command line", "HTTP API"} <= sections
    assert any("pgrecall recall" in block.code for block in SHELL_BLOCKS)


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda block: block.label)
def test_python_example(block: Block, reader: Reader) -> None:
    script = reader.directory / "example.py"
    script.write_text(block.code, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, str(script)],
        env=reader.environment,
        cwd=reader.directory,
        capture_output=True,
        text=True,
        timeout=PROGRAM_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr, completed.stderr
    for expected in EXPECTED_OUTPUT.get((block.section, reader.configuration), []):
        assert expected in completed.stdout, completed.stdout
    if reader.configuration == "without Ollama":
        # The newcomer is told what is going on, once.
        assert completed.stderr.count("Ollama is not reachable at") == 1, completed.stderr


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda block: block.label)
def test_shell_example(block: Block, reader: Reader) -> None:
    for command in shell_commands(block.code):
        reader.run(command)
