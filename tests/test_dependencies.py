"""Declared dependencies: what the service imports is declared, and the lock files pin it."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Code that runs in production: the package and the migrations the wheel carries.
RUNTIME_CODE = ("service", "migrations")


def _type_checking_only(node: ast.AST) -> bool:
    """Whether `node` is an `if TYPE_CHECKING:` block."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(folders: tuple[str, ...]) -> dict[str, set[str]]:
    """Top-level modules imported (absolutely, at run time) by the Python files in the folders."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if _type_checking_only(node):
                    node.body = []  # imports for type checkers only never run
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                for name in names:
                    top = name.partition(".")[0]
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def declared(requirements: list[str]) -> dict[str, Requirement]:
    """Requirements by canonical distribution name."""
    return {canonicalize_name(r.name): r for r in map(Requirement, requirements)}


def locked(lock: str) -> dict[str, set[str]]:
    """Pinned versions per canonical name (a universal lock may pin one per Python version)."""
    pins: dict[str, set[str]] = {}
    text = (ROOT / lock).read_text()
    for match in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", text, re.M):
        pins.setdefault(canonicalize_name(match[1]), set()).add(match[2])
    return pins


def test_every_third_party_import_is_a_declared_runtime_dependency() -> None:
    """A module imported at run time must come from [project].dependencies, not a dev extra."""
    runtime = declared(PROJECT["dependencies"])
    distributions = packages_distributions()
    missing = {}
    for module, files in imported_modules(RUNTIME_CODE).items():
        if module in sys.stdlib_module_names or module in ("service", "__future__"):
            continue
        providers = {canonicalize_name(d) for d in distributions.get(module, [])}
        assert providers, f"{module} (imported by {sorted(files)}) is not installed at all"
        if not providers & runtime.keys():
            missing[module] = (sorted(providers), sorted(files))
    assert not missing, f"imported but not declared in [project].dependencies: {missing}"


def test_the_import_walk_sees_what_a_plain_install_would_miss() -> None:
    """The walk sees imports inside functions too (e.g. uvicorn in the CLI), not only at the top."""
    modules = imported_modules(RUNTIME_CODE)
    assert {"httpx", "uvicorn", "shapely", "alembic"} <= modules.keys()


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("requirements.lock", PROJECT["dependencies"]),
        (
            "requirements-dev.lock",
            PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"],
        ),
    ],
)
def test_lock_pins_every_declared_dependency_within_its_range(
    lock: str, requirements: list[str]
) -> None:
    """`make lock` was run after the last change of pyproject.toml's dependencies."""
    pins = locked(lock)
    for name, requirement in declared(requirements).items():
        assert name in pins, f"{name} is declared but not in {lock}: run `make lock`"
        for version in pins[name]:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock} pins {name}=={version}, outside {requirement}: run `make lock`"
            )
    # Extras resolve too: uvicorn[standard] brings uvloop and httptools.
    assert "uvloop" in pins and "httptools" in pins


def test_runtime_and_dev_locks_agree() -> None:
    """The image (requirements.lock) and the tests (requirements-dev.lock) use the same versions."""
    runtime, dev = locked("requirements.lock"), locked("requirements-dev.lock")
    assert runtime.keys() <= dev.keys(), sorted(runtime.keys() - dev.keys())
    differ = {name: (runtime[name], dev[name]) for name in runtime if runtime[name] != dev[name]}
    assert not differ, f"versions differ between the locks: {differ}"


def test_every_pin_carries_hashes() -> None:
    """pip installs the locks with --require-hashes: each pinned line has at least one hash."""
    for lock in ("requirements.lock", "requirements-dev.lock"):
        entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text())
        for entry in entries:
            if "==" in entry.partition("\n")[0]:
                assert "--hash=sha256:" in entry, f"{lock}: no hash for {entry.partition(' ')[0]}"
