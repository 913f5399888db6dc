"""Readers of the deployment files that tests check or run: compose interpolation, Dockerfile."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "scripts" / "docker-entrypoint.sh"


# --- compose interpolation (the Compose Specification's rules) -----------------------------

_PLACEHOLDER = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?$")


class MissingVariableError(Exception):
    """A `${VAR:?message}` whose variable is unset (compose refuses to start)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def placeholders(text: str) -> list[tuple[str, str | None, str]]:
    """Every `$VAR` / `${VAR<op><arg>}` in a string, as (name, op, arg)."""
    found: list[tuple[str, str | None, str]] = []
    for match in _PLACEHOLDER.finditer(text):
        if match["escaped"]:
            continue
        if match["named"]:
            found.append((match["named"], None, ""))
            continue
        braced = _BRACED.match(match["braced"])
        assert braced, f"malformed interpolation ${{{match['braced']}}} in {text!r}"
        assert "{" not in match["braced"], f"nested braces are not portable: {text!r}"
        found.append((braced["name"], braced["op"], braced["arg"] or ""))
    return found


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """The compose document as compose sees it after substituting variables from `env`."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        braced = _BRACED.match(match["braced"])
        assert braced
        name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
        is_set = name in env
        is_nonempty = bool(env.get(name))
        if op in (":?", "?") and not (is_nonempty if op == ":?" else is_set):
            raise MissingVariableError(name, arg)
        if op == ":-":
            return env[name] if is_nonempty else arg
        if op == "-":
            return env[name] if is_set else arg
        if op == ":+":
            return arg if is_nonempty else ""
        if op == "+":
            return arg if is_set else ""
        return env.get(name, "")

    return _PLACEHOLDER.sub(substitute, value)


def all_strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from all_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from all_strings(item)
    elif isinstance(value, str):
        yield value


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of its two spellings, as a dict."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if item is None else str(item) for key, item in env.items()}


# --- Dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions:
        if keyword == "FROM":
            found.append([])
        found[-1].append((keyword, args))
    return found


def flags_and_args(args: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(args)
    flags = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, words
