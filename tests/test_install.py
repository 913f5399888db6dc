"""The production install paths, run for real: the Docker image's steps and a plain install.

No container engine runs here, so the image is reproduced step by step: every `pip` RUN of
the Dockerfile runs as written (its build stage in a fresh venv over a copy of what the
stage COPYs, its runtime stage in another empty venv), with `/wheels` and the stage's
WORKDIR mapped to temporary folders. Dependencies come from the package index at the
versions of requirements.lock; nothing is borrowed from the development venv. The result is
then used the way operators use it, on SQLite and on PostGIS, from an empty directory:

- the README's commands (`patroli migrate`, `patroli keys create`, `patroli serve`);
- the image's ENTRYPOINT and CMD with its ENV (and docker-compose.yml's for PostGIS).

Each run waits for /readyz, registers a unit, posts a ping with its device secret, reads it
back, and loads the live map with every local script and stylesheet it references.
(The image has Python 3.12; the venvs here use the interpreter running the tests.)
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from packaging.utils import canonicalize_name

from service.store.migrate import head_revision
from tests.deployfiles import (
    COMPOSE,
    DOCKERFILE,
    ROOT,
    dockerfile_instructions,
    environment,
    flags_and_args,
    interpolate,
    stages,
)

ADMIN_KEY = "install-test-admin-key-0123456789"
DEV_ONLY = ("pytest", "ruff", "mypy", "playwright", "uv")


@dataclass
class Image:
    """The image reproduced on disk: its runtime venv and what its last stage declares."""

    venv: Path
    rootfs: Path  # absolute paths of the image (/usr/local/bin, /var/lib/patroli, ...)
    workdir: Path
    env: dict[str, str]
    command: list[str]  # ENTRYPOINT + CMD

    @property
    def bin(self) -> Path:
        """The venv's scripts folder (python, pip, patroli)."""
        return self.venv / "bin"


def clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """An environment as in a fresh container: no settings, no pip configuration, venv first."""
    keep = {"HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "PIP_CERT"}
    env = {key: value for key, value in os.environ.items() if key in keep}
    path = os.pathsep.join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
    env |= {"PATH": path, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return env | extra


def run(
    argv: list[str] | str, cwd: Path, env: dict[str, str], timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run a command (a string runs in sh, as a Dockerfile RUN does); fail with its output."""
    shell = isinstance(argv, str)
    result = subprocess.run(
        argv, shell=shell, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{argv}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def map_paths(text: str, paths: dict[str, Path]) -> str:
    """Replace the image's absolute paths (whole path components) by their folders here."""
    for image_path, here in sorted(paths.items(), key=lambda item: -len(item[0])):
        text = re.sub(re.escape(image_path) + r"(?=/|\s|$|['\"])", str(here), text)
    return text


IGNORED = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.db", "*.db-*", "*.egg-info")


def copy_into(flags: dict[str, str], words: list[str], workdir: Path, rootfs: Path) -> None:
    """A COPY without --from: repository files into the image folder they name."""
    *sources, dest = words
    target = rootfs / dest.lstrip("/") if dest.startswith("/") else workdir / dest
    for source in sources:
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, target, dirs_exist_ok=True, ignore=IGNORED)
            continue
        into = target / origin.name if dest.endswith("/") else target
        into.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, into)
        if "chmod" in flags:
            into.chmod(int(flags["chmod"], 8))


def env_items(args: str) -> dict[str, str]:
    """The variables of an `ENV K=V K2=V2` instruction."""
    return dict(item.split("=", 1) for item in shlex.split(args))


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """Build stage, then runtime stage, of the Dockerfile, each pip step run as written."""
    tmp = tmp_path_factory.mktemp("image")
    wheels, rootfs = tmp / "wheels", tmp / "rootfs"
    build, runtime = stages(dockerfile_instructions(DOCKERFILE.read_text()))
    pip_steps = 0
    for venv, stage in ((tmp / "build-venv", build), (tmp / "runtime-venv", runtime)):
        run([sys.executable, "-m", "venv", str(venv)], cwd=tmp, env=clean_env(venv))
        declared: dict[str, str] = {}
        workdir = rootfs
        for keyword, args in stage:
            flags, words = flags_and_args(args)
            if keyword == "ENV":
                declared |= env_items(args)
            elif keyword == "WORKDIR":
                workdir = rootfs / args.lstrip("/")
                workdir.mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY" and "from" not in flags:
                copy_into(flags, words, workdir, rootfs)
            elif keyword == "RUN" and re.search(r"\bpip\b", args):
                # RUN's --mount flags are gone; its shell command runs with /wheels mapped.
                command = map_paths(" ".join(words), {"/wheels": wheels})
                run(command, cwd=workdir, env=clean_env(venv, **declared))
                pip_steps += 1
    assert pip_steps == 3, "expected: dependency wheels, the project's wheel, the install"
    final = {keyword: args for keyword, args in runtime}  # the last of each instruction
    return Image(
        venv=tmp / "runtime-venv",
        rootfs=rootfs,
        workdir=workdir,
        env=declared,
        command=[*yaml.safe_load(final["ENTRYPOINT"]), *yaml.safe_load(final["CMD"])],
    )


def test_image_holds_the_service_and_no_development_tools(image: Image) -> None:
    """The runtime venv has what the service imports, and nothing of the dev extra."""
    env = clean_env(image.venv)
    listed = run([str(image.bin / "pip"), "list", "--format=freeze"], cwd=image.workdir, env=env)
    names = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert "patroli" in names
    assert not names & set(DEV_ONLY), names & set(DEV_ONLY)
    run([str(image.bin / "python"), "-c", "import service.app, service.cli"], image.workdir, env)
    # Installed at the locked versions.
    locked = locked_versions(ROOT / "requirements.lock")
    for line in listed.stdout.splitlines():
        name, _, version = line.partition("==")
        if canonicalize_name(name) not in ("patroli", "pip", "setuptools"):
            assert version in locked.get(canonicalize_name(name), ()), f"{line} is not locked"


def locked_versions(lock: Path) -> dict[str, set[str]]:
    """Pinned versions per (canonical) package name in a requirements lock file."""
    pins: dict[str, set[str]] = {}
    for match in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", lock.read_text(), re.M):
        pins.setdefault(canonicalize_name(match[1]), set()).add(match[2])
    return pins


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(argv: list[str], cwd: Path, env: dict[str, str], port: int) -> Iterator[str]:
    """Run a server command until /readyz answers 200; yield its base URL; stop it."""
    log = cwd.parent / f"server-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"server exited:\n{log.read_text()[-4000:]}"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not ready in 90 s:\n{log.read_text()[-4000:]}"
            time.sleep(0.3)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def use_like_an_operator(base: str, admin_key: str) -> None:
    """Register a unit, post a ping as its tracker, read it back, load the live map."""
    with httpx.Client(base_url=base, timeout=30, follow_redirects=True) as http:
        admin = {"Authorization": f"Bearer {admin_key}"}
        unit = http.post(
            "/api/v1/units",
            json={"name": "Samapta 01", "device_id": "kaltim-samapta-01", "kind": "motorbike"},
            headers=admin,
        )
        assert unit.status_code == 201, unit.text
        secret = unit.json()["device_secret"]
        now = datetime.now(UTC).isoformat()
        ping = {"lat": -1.2683, "lon": 116.834, "ts": now, "accuracy_m": 5}
        posted = http.post(
            "/api/v1/pings", json=ping, headers={"Authorization": f"Bearer {secret}"}
        )
        assert posted.status_code in (200, 201), posted.text
        latest = http.get("/api/v1/positions/latest", headers=admin).json()
        [feature] = latest["features"]
        assert feature["geometry"]["coordinates"] == pytest.approx([116.834, -1.2683])

        page = http.get("/maps/live", headers=admin)
        assert page.status_code == 200, page.text[:500]
        assert page.headers["content-type"].startswith("text/html")
        assets = set(re.findall(r"""(?:src|href)=["'](/static/[^"']+)["']""", page.text))
        assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
        for asset in sorted(assets):
            assert http.get(asset).status_code == 200, asset


@pytest.fixture(params=["sqlite", "postgis"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store: a SQLite path that does not exist yet, or a database with PostGIS only."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'patroli.db'}"
    return str(request.getfixturevalue("empty_postgis_url"))


def test_readme_commands_from_an_empty_directory(
    image: Image, database: str, tmp_path: Path
) -> None:
    """`patroli migrate`, `patroli keys create --role admin`, `patroli serve`, as in the README."""
    if database.startswith("sqlite"):
        (tmp_path / "data").mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = clean_env(image.venv, PATROLI_DATABASE_URL=database)
    patroli = str(image.bin / "patroli")

    migrated = run([patroli, "migrate"], cwd, env, timeout=120)
    assert f"at revision {head_revision()}" in migrated.stdout
    created = run([patroli, "keys", "create", "--role", "admin"], cwd, env, timeout=120)
    admin_key = created.stdout.strip().splitlines()[-1]

    port = free_port()
    with serving([patroli, "serve", "--port", str(port)], cwd, env, port) as base:
        use_like_an_operator(base, admin_key)
    assert list(cwd.iterdir()) == [], "the service must not write into the working directory"


def test_image_entrypoint_and_command(image: Image, database: str, tmp_path: Path) -> None:
    """The image's ENTRYPOINT + CMD with its ENV (PostGIS: docker-compose.yml's environment)."""
    declared = dict(image.env)
    if database.startswith("sqlite"):
        # The image keeps its SQLite file under /var/lib/patroli (a volume): here, a fresh folder.
        data = tmp_path / "var-lib-patroli"
        data.mkdir()
        declared["PATROLI_DATABASE_URL"] = map_paths(
            declared["PATROLI_DATABASE_URL"], {"/var/lib/patroli": data}
        )
        assert declared["PATROLI_DATABASE_URL"] == f"sqlite:///{data}/patroli.db"
    else:
        app = yaml.safe_load(COMPOSE.read_text())["services"]["app"]
        compose_env = environment(interpolate(app, {"PATROLI_ADMIN_KEY": ADMIN_KEY}))
        assert compose_env["PATROLI_DATABASE_URL"].startswith("postgresql+psycopg://")
        declared |= compose_env | {"PATROLI_DATABASE_URL": database}
    env = clean_env(image.venv, **(declared | {"PATROLI_ADMIN_KEY": ADMIN_KEY}))
    env["PATH"] = os.pathsep.join([str(image.rootfs / "usr/local/bin"), env["PATH"]])

    port = free_port()
    command = [*image.command]
    assert command[-2:] == ["--port", "8000"]
    command[-1] = str(port)
    with serving(command, image.workdir, env, port) as base:
        use_like_an_operator(base, ADMIN_KEY)
