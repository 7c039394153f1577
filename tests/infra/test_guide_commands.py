"""docs/infra.md's code blocks name only what exists: script flags (from the scripts' real
--help), saved log queries, Terraform variables and outputs, and documented settings.

A guide that says `scripts/verify --skip-debg`, `terraform output verify_cmd` or
`worker_hosts = ...` fails here instead of in a new operator's terminal.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.infra.conftest import REPO, SCRIPTS, TF_DIR
from tests.support.ports import free_tcp_port, free_udp_port

GUIDE = REPO / "docs" / "infra.md"
README = REPO / "README.md"
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
OPERATORS = {"|", "||", "&&", ";", "&"}
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")
# Dev commands whose --help is safe to run (it prints and exits): their flags are checked too.
DEV_COMMANDS_WITH_HELP = ("holepunch-dev-stun",)


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int  # of the opening fence, for messages


def code_blocks(markdown: str) -> list[Block]:
    """Fenced blocks (```lang ... ```), with the line each starts on."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        fence = re.match(r"^\s*```(\w*)\s*$", lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not re.match(r"^\s*```\s*$", lines[index]):
            body.append(lines[index])
            index += 1
        # Blocks inside list items are indented: their text is read as if they were not.
        text = textwrap.dedent("\n".join(body))
        blocks.append(Block(fence.group(1).lower(), text, start + 1))
        index += 1
    return blocks


def shell_commands(text: str) -> Iterator[list[str]]:
    """Each simple command of a shell block, as words: continuations joined, comments and
    operators (|, &&, ;) split off."""
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        command: list[str] = []
        for word in lexer:
            if word in OPERATORS:
                if command:
                    yield command
                command = []
            else:
                command.append(word)
        if command:
            yield command


def hcl_top_level_names(text: str) -> list[str]:
    """The names assigned at the top level of a tfvars snippet (`name = value`)."""
    return list(hcl_assignments(text))


def hcl_assignments(text: str) -> dict[str, set[str]]:
    """Each top-level name of a tfvars snippet, with the attribute names its object value
    sets directly (`{ secret = ..., version = ... }`, or the objects of a list of them);
    deeper maps (an env's keys) are values, not attributes, and are left out."""
    assignments: dict[str, set[str]] = {}
    current: str | None = None
    depth = 0
    for line in text.splitlines():
        code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line).split("#", 1)[0]
        top = re.match(r"^([a-z_][a-z0-9_]*)\s*=", code) if depth == 0 else None
        if top:
            current = top.group(1)
            assignments[current] = set()
        position = 0
        for match in re.finditer(r"[{}]|([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)", code):
            if match.group(0) == "{":
                depth += 1
            elif match.group(0) == "}":
                depth -= 1
            elif depth == 1 and current is not None and match.start() >= position:
                assignments[current].add(match.group(1))
            position = match.end()
    return assignments


def variable_attributes(name: str) -> str:
    """The text of a variable's block in variables.tf (its type names its attributes)."""
    text = (TF_DIR / "variables.tf").read_text()
    start = text.index(f'variable "{name}"')
    end = text.find('\nvariable "', start + 1)
    return text[start : end if end > 0 else len(text)]


@dataclass(frozen=True)
class Known:
    """What exists, for the checks."""

    variables: frozenset[str]
    outputs: frozenset[str]
    queries: frozenset[str]
    settings: frozenset[str]
    help_text: Callable[[tuple[str, ...]], str]


def terraform_names(kind: str) -> frozenset[str]:
    pattern = re.compile(rf'^{kind}\s+"([^"]+)"', flags=re.MULTILINE)
    return frozenset(
        name for path in TF_DIR.glob("*.tf") for name in pattern.findall(path.read_text())
    )


@cache
def real_help(command: tuple[str, ...]) -> str:
    if command[0].startswith("scripts/"):
        argv = [str(REPO / command[0]), *command[1:], "--help"]
    else:
        argv = [str(Path(sys.executable).parent / command[0]), *command[1:], "--help"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{' '.join(argv)} failed: {result.stderr}"
    return result.stdout


def saved_queries() -> frozenset[str]:
    sys.path.insert(0, str(SCRIPTS))
    try:
        import holepunch_logs_queries

        catalogue = holepunch_logs_queries.load_catalogue()
    finally:
        sys.path.remove(str(SCRIPTS))
    return frozenset({"list", *catalogue.queries, *catalogue.field_queries})


def documented_settings() -> frozenset[str]:
    """Environment variables the README's settings tables name (`NAME` in a table row)."""
    rows = [line for line in README.read_text().splitlines() if line.startswith("|")]
    return frozenset(re.findall(r"`([A-Z][A-Z0-9_]+)`", "\n".join(rows)))


def has_flag(help_text: str, flag: str) -> bool:
    # --[no-]x style (argparse's BooleanOptionalAction prints --x, --no-x).
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text) is not None


def check_command(words: list[str], known: Known) -> list[str]:
    """Problems with one shell command of the guide (empty when it names only what exists)."""
    problems: list[str] = []
    env_names: list[str] = []
    while words and ASSIGNMENT.match(words[0]):
        env_names.append(ASSIGNMENT.match(words[0]).group(1))  # type: ignore[union-attr]
        words = words[1:]
    if not words:
        return problems
    program = words[0]
    base = Path(program).name
    if program.startswith("scripts/"):
        command: tuple[str, ...] = (program,)
        rest = words[1:]
        if base == "bootstrap" and rest[:1] == ["preflight"]:
            command, rest = (program, "preflight"), rest[1:]
        help_text = known.help_text(command)
        for word in rest:
            if word.startswith("--"):
                flag = word.split("=", 1)[0]
                if not has_flag(help_text, flag):
                    problems.append(f"`{' '.join(command)}` has no {flag} (not in its --help)")
        if base == "logs":
            positionals = [w for w in rest if not w.startswith("-")]
            takes_value = {"--since", "--limit", "--project", "--rendezvous-service"}
            takes_value |= {"--worker-service", "--worker-host"}
            flags_with_values = {rest[i + 1] for i, w in enumerate(rest[:-1]) if w in takes_value}
            queries = [w for w in positionals if w not in flags_with_values]
            if queries and queries[0] not in known.queries:
                problems.append(f"`scripts/logs {queries[0]}`: no such saved query")
    elif base in DEV_COMMANDS_WITH_HELP:
        help_text = known.help_text((base,))
        for word in words[1:]:
            if word.startswith("--") and not has_flag(help_text, word.split("=", 1)[0]):
                problems.append(f"`{base}` has no {word.split('=', 1)[0]}")
    elif program == "terraform":
        rest = [w for w in words[1:] if not w.startswith("-chdir")]
        if rest[:1] == ["output"]:
            names = [w for w in rest[1:] if not w.startswith("-")]
            problems += [f"no Terraform output {n!r}" for n in names if n not in known.outputs]
        for index, word in enumerate(rest):
            if word == "-var" and index + 1 < len(rest):
                name = rest[index + 1].split("=", 1)[0]
                if name not in known.variables:
                    problems.append(f"no Terraform variable {name!r} (-var)")
    if base.startswith("holepunch-") or program.startswith("scripts/"):
        problems += [
            f"{name} is not a setting the README documents"
            for name in env_names
            if name not in known.settings
        ]
    return problems


def check_guide(markdown: str, known: Known) -> list[str]:
    problems: list[str] = []
    for block in code_blocks(markdown):
        if block.language in SHELL_LANGUAGES:
            for words in shell_commands(block.text):
                problems += [f"line {block.line}: {p}" for p in check_command(list(words), known)]
        elif block.language == "hcl":
            for name, attributes in hcl_assignments(block.text).items():
                if name not in known.variables:
                    problems.append(f"line {block.line}: no Terraform variable {name!r}")
                    continue
                declared = variable_attributes(name)
                problems += [
                    f"line {block.line}: {name} has no attribute {attribute!r}"
                    for attribute in sorted(attributes)
                    if not re.search(rf"\b{attribute}\s*=", declared)
                ]
    return problems


@pytest.fixture(scope="module")
def known() -> Known:
    return Known(
        variables=terraform_names("variable"),
        outputs=terraform_names("output"),
        queries=saved_queries(),
        settings=documented_settings(),
        help_text=real_help,
    )


def test_every_guide_command_names_what_exists(known: Known) -> None:
    markdown = GUIDE.read_text()
    blocks = code_blocks(markdown)
    # The guide is read: it has shell commands, tfvars snippets, scripts and Terraform.
    assert {"bash", "hcl"} <= {b.language for b in blocks}
    commands = [w for b in blocks if b.language in SHELL_LANGUAGES for w in shell_commands(b.text)]
    programs = {Path(c[0]).name for c in commands if c}
    assert {"bootstrap", "deploy", "verify", "logs", "terraform"} <= programs
    problems = check_guide(markdown, known)
    assert not problems, "docs/infra.md:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", ["infra/terraform/README.md", "docs/alerts.md"])
def test_the_other_deployment_docs_name_what_exists(known: Known, path: str) -> None:
    problems = check_guide((REPO / path).read_text(), known)
    assert not problems, f"{path}:\n" + "\n".join(problems)


def test_the_checker_catches_each_kind_of_mistake(known: Known) -> None:
    bad = """
```bash
scripts/verify --skip-debg --since 30m     # a typo
scripts/bootstrap preflight --auth-mod token
scripts/logs stunn --since 1h
scripts/logs --worker-host service stun   # fine: a flag's value is not the query
terraform -chdir=infra/terraform output -raw verify_cmd
terraform -chdir=infra/terraform apply -var worker_hosts=service
NO_SUCH_SETTING=1 .venv/bin/holepunch-worker
.venv/bin/holepunch-dev-stun --listen 127.0.0.1:3478 --port 1
```
```hcl
worker_hosts = "service"
region       = "us-central1"
shared_registry = {
  enabled = true
  tiers   = "BASIC"
}
admin_token_secret = { secret = "x", versions = "1" }
```
"""
    problems = check_guide(bad, known)
    expected = [
        "`scripts/verify` has no --skip-debg",
        "`scripts/bootstrap preflight` has no --auth-mod",
        "`scripts/logs stunn`: no such saved query",
        "no Terraform output 'verify_cmd'",
        "no Terraform variable 'worker_hosts' (-var)",
        "NO_SUCH_SETTING is not a setting the README documents",
        "`holepunch-dev-stun` has no --port",
        "no Terraform variable 'worker_hosts'",
        "shared_registry has no attribute 'tiers'",
        "admin_token_secret has no attribute 'versions'",
    ]
    for text in expected:
        assert [p for p in problems if text in p], f"{text!r} not reported: {problems}"
    assert len(problems) == len(expected), problems


def test_shell_words_split_like_a_shell() -> None:
    text = 'export A="$(gcloud x --y)" && scripts/verify \\\n    --since 30m   # comment\n'
    assert list(shell_commands(text)) == [
        ["export", "A=$(gcloud x --y)"],
        ["scripts/verify", "--since", "30m"],
    ]


# --- "Run it by hand", run as written (ports swapped for free ones) ---


class Started:
    """A long-running command of the guide, its JSON log lines read as they come."""

    def __init__(self, words: list[str], cwd: Path) -> None:
        env = dict(os.environ)
        while ASSIGNMENT.match(words[0]):
            name, value = words[0].split("=", 1)
            env[name] = value
            words = words[1:]
        program = words[0]
        if program.startswith(".venv/bin/"):
            # The virtualenv running these tests stands in for the guide's .venv.
            program = str(Path(sys.executable).parent / Path(program).name)
        self.name = Path(program).name
        self.process = subprocess.Popen(
            [program, *words[1:]],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, event: str, timeout: float = 30.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"{self.name} exited: {''.join(self.seen[-20:])}")
            self.seen.append(line)
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("event") == event:
                return record
        raise AssertionError(
            f"{self.name}: no {event} within {timeout} s: {''.join(self.seen[-20:])}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def by_hand_block(markdown: str) -> str:
    section = markdown.split("## Run it by hand", 1)[1]
    return next(b.text for b in code_blocks(section) if b.language in SHELL_LANGUAGES)


def test_run_it_by_hand_works_as_written() -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not found")
    text = by_hand_block(GUIDE.read_text())
    ports = {"3478": free_udp_port(), "8700": free_tcp_port()}
    ports |= {"8701": free_tcp_port(), "8702": free_tcp_port()}
    for written, free in ports.items():
        assert written in text, f"the by-hand block no longer uses port {written}"
        text = re.sub(rf"(?<=[=:]){written}\b", str(free), text)
    commands = list(shell_commands(text))
    assert len(commands) == 5, commands
    *servers, introduce = commands
    started: list[Started] = []
    try:
        stun = Started(servers[0], REPO)
        started.append(stun)
        rendezvous = Started(servers[1], REPO)
        started.append(rendezvous)
        rendezvous.wait_for("server_started")
        workers = [Started(words, REPO) for words in servers[2:]]
        started += workers
        for worker in workers:
            worker.wait_for("endpoint_ack")
        answer = subprocess.run(
            [curl, "-sS", *introduce[1:]], capture_output=True, text=True, timeout=30, check=False
        )
        assert answer.returncode == 0, answer.stderr
        assert "session_id" in json.loads(answer.stdout)
        connected = workers[0].wait_for("punch_connected")
        assert connected.get("peer_id") == "w-b", connected
    finally:
        for process in reversed(started):
            process.stop()
    assert [p.process.returncode for p in started] == [0] * len(started)
