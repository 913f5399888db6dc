"""The built wheel's contents: every module, data file and migration of the package.

The wheel is built offline from a copy of the sources with the dev venv's setuptools (no
build isolation, no index). Installing and running it for real, with its dependencies from
the package index, is tests/test_install.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from service.maps.assets import DOCS_DIR

ROOT = Path(__file__).resolve().parents[1]
# What a wheel is built from (the Dockerfile's build stage copies the same).
SOURCES = ("pyproject.toml", "README.md", "service", "migrations")
PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def _run(
    argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without settings or paths that could leak the checkout in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PATROLI_", "PYTHON", "PIP_", "VIRTUAL_ENV"))
    }
    return {**env, **PIP_ENV, **extra}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of its sources."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.db", "*.db-*", "*.egg-info")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheels")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index"]
    _run([*pip_wheel, "--no-build-isolation", "--wheel-dir", str(out), str(src)], env=_clean_env())
    (built,) = out.glob("patroli-*.whl")
    return built


def test_wheel_carries_the_migrations(wheel: Path) -> None:
    """migrations/ is inside the package, not a top-level package of its own."""
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"service/migrations/env.py", "service/migrations/script.py.mako"}
    expected |= {
        f"service/migrations/versions/{path.name}"
        for path in (ROOT / "migrations" / "versions").glob("*.py")
    }
    assert expected <= names, sorted(expected - names)
    assert not any(name.startswith("migrations/") for name in names), "no top-level package"


def test_wheel_carries_every_module_and_data_file_of_the_package(wheel: Path) -> None:
    """pyproject.toml lists the packages: a new subpackage must be added there."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = {".py"} | {PurePosixPath(p).suffix for p in setuptools["package-data"]["service"]}
    names = set(zipfile.ZipFile(wheel).namelist())
    files = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "service").rglob("*")
        if path.is_file() and path.suffix in shipped and "__pycache__" not in path.parts
    }
    assert "service/py.typed" in files
    assert files <= names, sorted(files - names)


def test_wheel_declares_the_docs_assets_and_session_signing(wheel: Path) -> None:
    """Swagger UI/ReDoc files and cookie signing come from declared runtime dependencies."""
    with zipfile.ZipFile(wheel) as archive:
        (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [
            line.split(":", 1)[1].strip().lower().replace("_", "-")
            for line in archive.read(meta).decode().splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line
        ]
    assert any(r.startswith("fastapi-offline") for r in requires), requires
    assert any(r.startswith("itsdangerous") for r in requires), requires
    shipped = {p.name for p in Path(DOCS_DIR).iterdir()}
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"} <= shipped
