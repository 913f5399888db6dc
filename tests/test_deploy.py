"""Deployment files: docker-compose.yml, Dockerfile, .dockerignore, scripts/, Makefile, .ci/run.

No Docker engine is needed. The compose file is validated, after variable interpolation,
against the Compose Specification's JSON schema (the copy vendored by the check-jsonschema
package) and checked for how its services fit together; the Dockerfile is parsed into its
instructions; the shell scripts and the Makefile run against stub commands in a temp folder.
"""

from __future__ import annotations

import copy
import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.deployfiles import (
    COMPOSE,
    DOCKERFILE,
    ENTRYPOINT,
    ROOT,
    MissingVariableError,
    all_strings,
    dockerfile_instructions,
    environment,
    flags_and_args,
    interpolate,
    placeholders,
    stages,
)

DOCKERIGNORE = ROOT / ".dockerignore"
SYSTEM_DEPS = ROOT / "scripts" / "install-system-deps.sh"
MAKEFILE = ROOT / "Makefile"
CI_RUN = ROOT / ".ci" / "run"

# Variables the entrypoint reads itself (not service settings).
ENTRYPOINT_VARIABLES = {"PATROLI_DATABASE_URL", "PATROLI_DB_WAIT_TIMEOUT", "PATROLI_SKIP_MIGRATE"}
TEST_ENV = {"PATROLI_ADMIN_KEY": "test-admin-key"}


def healthcheck_command(service: dict[str, Any]) -> list[str]:
    """The argv of a service's healthcheck test (CMD list or CMD-SHELL string)."""
    check = service.get("healthcheck")
    assert check, "no healthcheck"
    assert not check.get("disable"), "healthcheck disabled"
    test = check["test"]
    if isinstance(test, str):
        return shlex.split(test)
    assert test[0] in ("CMD", "CMD-SHELL"), f"healthcheck test must start with CMD: {test}"
    return shlex.split(test[1]) if test[0] == "CMD-SHELL" else list(test[1:])


def option(argv: list[str], *names: str) -> str | None:
    """The value given to a command-line option (`-U x`, `-Ux`, `--username=x`)."""
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
            if not name.startswith("--") and arg.startswith(name) and len(arg) > len(name):
                return arg[len(name) :]
    return None


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict), "docker-compose.yml is not a mapping"
    return document


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any]) -> dict[str, Any]:
    result = interpolate(raw_compose, TEST_ENV)
    assert isinstance(result, dict)
    return result


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict), "no services"
    return found


# --- the Compose Specification schema ------------------------------------------------------


def compose_schema_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    spec = importlib.util.find_spec("check_jsonschema")
    if spec is None or spec.origin is None:
        pytest.skip("check-jsonschema (which ships the Compose Specification schema) missing")
    path = Path(spec.origin).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    assert path.is_file(), f"check-jsonschema no longer ships {path.name}"
    schema = json.loads(path.read_text())
    assert schema.get("title") == "Compose Specification"
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def test_compose_file_conforms_to_the_compose_specification(compose: dict[str, Any]) -> None:
    validator = compose_schema_validator()
    errors = [f"{error.json_path}: {error.message}" for error in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_schema_check_rejects_a_broken_compose_file(compose: dict[str, Any]) -> None:
    """The schema really constrains services (so the test above can fail)."""
    validator = compose_schema_validator()
    misspelled = copy.deepcopy(compose)
    misspelled["services"]["app"]["depend_on"] = misspelled["services"]["app"].pop("depends_on")
    assert list(validator.iter_errors(misspelled))
    bad_condition = copy.deepcopy(compose)
    bad_condition["services"]["app"]["depends_on"] = {"db": {"condition": "healthy"}}
    assert list(validator.iter_errors(bad_condition))


# --- interpolation ------------------------------------------------------------------------


def test_every_variable_has_a_default_or_an_error(raw_compose: dict[str, Any]) -> None:
    seen = []
    for text in all_strings(raw_compose):
        for name, op, arg in placeholders(text):
            seen.append(name)
            assert op in (":-", "-", ":?", "?"), f"${name} in {text!r} has no default or error"
            if op in (":?", "?"):
                assert arg.strip(), f"${name} in {text!r}: the error needs a message"
    assert seen, "expected at least the admin key to be interpolated"


def test_only_the_admin_key_is_required(raw_compose: dict[str, Any]) -> None:
    required = {
        name
        for text in all_strings(raw_compose)
        for name, op, _ in placeholders(text)
        if op in (":?", "?")
    }
    assert required == {"PATROLI_ADMIN_KEY"}
    with pytest.raises(MissingVariableError) as missing:
        interpolate(raw_compose, {})
    assert missing.value.name == "PATROLI_ADMIN_KEY"
    with pytest.raises(MissingVariableError):
        interpolate(raw_compose, {"PATROLI_ADMIN_KEY": ""})


def test_admin_key_comes_from_the_environment(
    raw_compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    raw = environment(raw_compose["services"]["app"])["PATROLI_ADMIN_KEY"]
    assert re.fullmatch(r"\$\{PATROLI_ADMIN_KEY:\?[^}]+\}", raw), raw
    assert environment(services["app"])["PATROLI_ADMIN_KEY"] == TEST_ENV["PATROLI_ADMIN_KEY"]


# --- services -----------------------------------------------------------------------------


def test_db_and_app_services_exist(services: dict[str, dict[str, Any]]) -> None:
    assert {"db", "app"} <= set(services)


def test_db_runs_a_pinned_postgis_image(services: dict[str, dict[str, Any]]) -> None:
    image = services["db"].get("image", "")
    match = re.fullmatch(r"postgis/postgis:(\d+)-(\d+)\.(\d+)", image)
    assert match, f"db image {image!r} is not a pinned postgis/postgis:<pg>-<postgis> tag"
    assert int(match[1]) >= 15


def test_db_healthcheck_asks_pg_isready_about_the_app_database(
    services: dict[str, dict[str, Any]],
) -> None:
    db = services["db"]
    env = environment(db)
    argv = healthcheck_command(db)
    assert argv[0] == "pg_isready"
    assert option(argv, "-U", "--username") == env["POSTGRES_USER"]
    assert option(argv, "-d", "--dbname") == env["POSTGRES_DB"]


def test_database_url_points_at_the_db_service(services: dict[str, dict[str, Any]]) -> None:
    url = make_url(environment(services["app"])["PATROLI_DATABASE_URL"])
    db_env = environment(services["db"])
    assert url.drivername == "postgresql+psycopg"
    assert url.host == "db" and url.host in services
    assert url.port in (None, 5432)
    assert url.username == db_env["POSTGRES_USER"]
    assert url.password == db_env["POSTGRES_PASSWORD"]
    assert url.database == db_env["POSTGRES_DB"]


def test_app_starts_after_the_db_is_healthy(services: dict[str, dict[str, Any]]) -> None:
    depends_on = services["app"].get("depends_on")
    assert isinstance(depends_on, dict), "depends_on must be a mapping to carry a condition"
    assert depends_on["db"]["condition"] == "service_healthy"


def container_ports(entries: list[Any]) -> set[int]:
    ports = set()
    for entry in entries:
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
            continue
        text = str(entry).split("/", 1)[0]
        ports.add(int(text.rsplit(":", 1)[-1]))
    return ports


def test_app_publishes_port_8000(services: dict[str, dict[str, Any]]) -> None:
    assert 8000 in container_ports(services["app"].get("ports", []))


def test_services_restart_on_their_own(services: dict[str, dict[str, Any]]) -> None:
    for name in ("db", "app"):
        policy = services[name].get("restart", "no")
        assert re.fullmatch(r"always|unless-stopped|on-failure(:\d+)?", policy), (name, policy)


def test_app_environment_names_real_settings(
    raw_compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    from service.config import Settings

    raw_env = environment(raw_compose["services"]["app"])
    for key in environment(services["app"]):
        assert key.startswith("PATROLI_"), key
        field = key.removeprefix("PATROLI_").lower()
        assert field in Settings.model_fields or key in ENTRYPOINT_VARIABLES, key
        for name, op, arg in placeholders(raw_env[key]):
            if op in (":-", "-") and field in Settings.model_fields and name == key:
                default = Settings.model_fields[field].default
                # An empty value leaves an optional setting unset.
                expected = "" if default is None else str(default)
                assert expected == arg, f"{key} default {arg!r} differs from {default!r}"


class _Readyz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_app_healthcheck_probes_readyz_with_python(
    services: dict[str, dict[str, Any]], status: int, healthy: bool
) -> None:
    argv = healthcheck_command(services["app"])
    assert Path(argv[0]).name.startswith("python"), "the slim image has no curl or wget"
    assert argv[1] == "-c"
    code = argv[2]
    assert "http://127.0.0.1:8000/readyz" in code or "http://localhost:8000/readyz" in code
    handler = type("Handler", (_Readyz,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        probe = re.sub(r"(127\.0\.0\.1|localhost):8000", f"127.0.0.1:{port}", code)
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) is healthy, result.stderr.decode()


def test_named_volumes_are_declared_and_used(compose: dict[str, Any]) -> None:
    used = set()
    for service in compose["services"].values():
        for entry in service.get("volumes", []):
            if isinstance(entry, dict):
                if entry.get("type", "volume") == "volume" and entry.get("source"):
                    used.add(entry["source"])
                continue
            parts = str(entry).split(":")
            if len(parts) >= 2 and not parts[0].startswith((".", "/", "~", "$")):
                used.add(parts[0])
    declared = set(compose.get("volumes") or {})
    assert used, "the database needs a named volume"
    assert used <= declared, f"undeclared volumes: {used - declared}"
    assert declared <= used, f"declared but unused volumes: {declared - used}"
    db_targets = [str(v).split(":")[1] for v in compose["services"]["db"].get("volumes", [])]
    assert "/var/lib/postgresql/data" in db_targets


def test_app_is_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    build = services["app"].get("build")
    assert build, "app has no build section"
    context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (context / dockerfile).resolve() == DOCKERFILE


# --- several instances behind nginx (profile "cluster") --------------------------------------

NGINX_CONF = ROOT / "deploy" / "nginx" / "patroli.conf"
CLUSTER = "cluster"


def nginx_directives(text: str) -> list[tuple[tuple[str, ...], str, list[str]]]:
    """Every directive of an nginx configuration: (enclosing blocks, name, arguments)."""
    found: list[tuple[tuple[str, ...], str, list[str]]] = []
    blocks: list[str] = []
    words: list[str] = []
    for token in re.findall(r'"[^"]*"|[{};]|[^\s{};"]+', re.sub(r"#[^\n]*", "", text)):
        if token == "{":
            blocks.append(" ".join(words))
            words = []
        elif token == "}":
            assert not words, f"unterminated directive {words}"
            blocks.pop()
        elif token == ";":
            found.append((tuple(blocks), words[0], words[1:]))
            words = []
        else:
            words.append(token.strip('"'))
    assert not blocks and not words, "unbalanced nginx configuration"
    return found


def directive(
    found: list[tuple[tuple[str, ...], str, list[str]]], block: str, name: str
) -> list[str]:
    """The arguments of a directive in the innermost block `block` or, failing that, in `server`."""
    for where in (block, "server"):
        for blocks, key, args in found:
            if blocks and blocks[-1] == where and key == name:
                return args
    raise AssertionError(f"no {name} for {block}")


def test_replicas_and_nginx_come_with_the_cluster_profile(
    services: dict[str, dict[str, Any]],
) -> None:
    assert services["app2"].get("profiles") == [CLUSTER]
    assert services["nginx"].get("profiles") == [CLUSTER]
    # Without the profile nothing changes: the database and one app.
    default = {name for name, svc in services.items() if not svc.get("profiles")}
    assert default == {"db", "app"}


def test_the_second_replica_is_the_app_but_for_migrating(
    services: dict[str, dict[str, Any]],
) -> None:
    app, app2 = services["app"], services["app2"]
    assert app2["build"] == app["build"]
    env, env2 = environment(app), environment(app2)
    assert env2.pop("PATROLI_SKIP_MIGRATE") == "1"
    assert env2 == env, "the replicas must share every setting"
    # app migrates at start; app2 starts after app is healthy (its /readyz: schema current).
    assert app2["depends_on"]["app"]["condition"] == "service_healthy"
    assert healthcheck_command(app2) == healthcheck_command(app)
    assert "PATROLI_SESSION_SECRET" in env, "map sessions must hold on every replica"


def test_nginx_fronts_every_replica_with_the_shipped_config(
    services: dict[str, dict[str, Any]],
) -> None:
    nginx = services["nginx"]
    image = nginx.get("image", "")
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+(-alpine)?", image), f"{image} is not pinned"
    mounts = [str(v).split(":") for v in nginx.get("volumes", [])]
    assert [m[:2] for m in mounts] == [
        ["./deploy/nginx/patroli.conf", "/etc/nginx/conf.d/default.conf"]
    ]
    assert (ROOT / mounts[0][0]).resolve() == NGINX_CONF
    assert 80 in container_ports(nginx.get("ports", []))
    replicas = {
        name
        for name, svc in services.items()
        if svc.get("build") and "command" not in svc  # the image's command: patroli serve
    }
    assert replicas == {"app", "app2"}
    for name in replicas:
        assert nginx["depends_on"][name]["condition"] == "service_healthy"
    found = nginx_directives(NGINX_CONF.read_text())
    upstreams = {
        args[0]
        for blocks, key, args in found
        if blocks == ("upstream patroli",) and key == "server"
    }
    assert upstreams == {f"{name}:8000" for name in replicas}


def test_nginx_streams_events_unbuffered_and_retries_only_what_it_may() -> None:
    found = nginx_directives(NGINX_CONF.read_text())
    stream = "location = /api/v1/stream"
    assert directive(found, stream, "proxy_pass") == ["http://patroli"]
    assert directive(found, stream, "proxy_buffering") == ["off"]
    assert directive(found, stream, "proxy_http_version") == ["1.1"]
    # Upstream connections kept alive: no "Connection: close" passed on.
    assert any(key == "proxy_set_header" and args == ["Connection", ""] for _, key, args in found)
    timeout = directive(found, stream, "proxy_read_timeout")[0]
    seconds = int(timeout[:-1]) * {"s": 1, "m": 60, "h": 3600}[timeout[-1]]
    assert seconds > 60, "longer than the keep-alive comments (15 s) by far"
    retry = directive(found, "location /", "proxy_next_upstream")
    assert "error" in retry and "timeout" in retry
    assert "non_idempotent" not in retry, "a POST that reached an instance is never resent"
    # Idle upstream connections end before uvicorn's own keep-alive timeout (5 s).
    keepalive = directive(found, "upstream patroli", "keepalive_timeout")[0]
    assert int(keepalive.rstrip("s")) < 5


# --- Dockerfile -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_instructions() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text())


def test_dockerfile_starts_with_from_and_pins_its_images(
    docker_instructions: list[tuple[str, str]],
) -> None:
    assert docker_instructions[0][0] == "FROM"
    stage_names = set()
    for keyword, args in docker_instructions:
        if keyword != "FROM":
            continue
        _, words = flags_and_args(args)
        image = words[0]
        if image not in stage_names:
            name, _, tag = image.partition("@")[0].rpartition("/")[2].partition(":")
            assert name and (tag or "@" in image), f"{image}: no tag"
            assert tag != "latest", f"{image}: 'latest' is not a pinned version"
        if len(words) == 3 and words[1].upper() == "AS":
            stage_names.add(words[2])
    known = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT"}
    known |= {"VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
    unknown = {keyword for keyword, _ in docker_instructions} - known
    assert not unknown, f"not Dockerfile instructions: {unknown}"


def test_image_runs_patroli_serve_as_a_non_root_user(
    docker_instructions: list[tuple[str, str]],
) -> None:
    final = stages(docker_instructions)[-1]
    assert flags_and_args(final[0][1])[1][0] == "python:3.12-slim"
    users = [args.split(":")[0] for keyword, args in final if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the service must not run as root"
    exposed = [port for keyword, args in final if keyword == "EXPOSE" for port in args.split()]
    assert "8000" in exposed or "8000/tcp" in exposed
    cmd = [json.loads(args) for keyword, args in final if keyword == "CMD"]
    assert cmd[-1] == ["patroli", "serve", "--host", "0.0.0.0", "--port", "8000"]
    entrypoint = [json.loads(args) for keyword, args in final if keyword == "ENTRYPOINT"]
    assert entrypoint, "expected the entrypoint script"
    assert len(entrypoint[-1]) == 1 and entrypoint[-1][0].endswith("docker-entrypoint.sh")


def test_package_is_installed_without_editable_mode(
    docker_instructions: list[tuple[str, str]],
) -> None:
    runs = [args for keyword, args in docker_instructions if keyword == "RUN"]
    editable = re.compile(r"pip\s+install\b[^;&|]*?(\s-e\b|\s--editable\b)")
    assert not any(editable.search(run) for run in runs), "the image needs a regular install"
    final_runs = [args for keyword, args in stages(docker_instructions)[-1] if keyword == "RUN"]
    assert any(re.search(r"pip install\b.*\bpatroli\b", run) for run in final_runs)


def test_wheel_is_built_from_the_package_and_its_migrations(
    docker_instructions: list[tuple[str, str]],
) -> None:
    """The build stage copies every folder the wheel maps in; the runtime needs no sources."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    needed = {"pyproject.toml", "README.md", "service"}
    needed |= {PurePosixPath(folder).parts[0] for folder in setuptools["package-dir"].values()}
    assert "migrations" in needed
    build = stages(docker_instructions)[0]
    wheel_step = next(
        i
        for i, (keyword, args) in enumerate(build)
        if keyword == "RUN" and re.search(r"pip wheel\b.*--no-deps\b.*\s\.$", args)
    )
    copied = {
        PurePosixPath(source).parts[0]
        for keyword, args in build[:wheel_step]
        if keyword in ("COPY", "ADD")
        for source in flags_and_args(args)[1][:-1]
    }
    assert needed <= copied, f"not in the build stage before `pip wheel .`: {needed - copied}"
    final_copies = [args for keyword, args in stages(docker_instructions)[-1] if keyword == "COPY"]
    assert not any("migrations" in args for args in final_copies), "the wheel carries them"


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (Docker's rules)."""
    rules: list[tuple[re.Pattern[str], bool]] = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex = ""
        for part in re.split(r"(\*\*/?|\*|\?|\[[^\]]*\])", pattern):
            if part.startswith("["):
                regex += "[^" + part[2:] if part.startswith("[^") else part
            elif part.startswith("**"):
                regex += "(?:.*/)?" if part.endswith("/") else ".*"
            elif part == "*":
                regex += "[^/]*"
            elif part == "?":
                regex += "[^/]"
            else:
                regex += re.escape(part)
        rules.append((re.compile(regex), negated))
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for rule, negated in rules:
        if any(rule.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def test_dockerfile_copies_files_that_exist_and_reach_the_build(
    docker_instructions: list[tuple[str, str]],
) -> None:
    copied = []
    for keyword, args in docker_instructions:
        if keyword not in ("COPY", "ADD"):
            continue
        flags, words = flags_and_args(args)
        if "from" in flags:
            continue
        copied += words[:-1]
    assert "scripts/docker-entrypoint.sh" in copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not dockerignore_excludes(source), f"COPY {source}: excluded by .dockerignore"
    for package_file in ("service/__init__.py", "service/config.py"):
        assert not dockerignore_excludes(package_file), package_file
    for private in (".git/HEAD", ".venv/bin/python", "tests/test_deploy.py", "patroli.db"):
        assert dockerignore_excludes(private), f"{private} would be sent to the builder"
    assert dockerignore_excludes("service/__pycache__/config.cpython-312.pyc")


def test_image_healthcheck_probes_readyz(docker_instructions: list[tuple[str, str]]) -> None:
    checks = [args for keyword, args in stages(docker_instructions)[-1] if keyword == "HEALTHCHECK"]
    assert checks and "/readyz" in checks[-1] and "curl" not in checks[-1]


# --- scripts/docker-entrypoint.sh ----------------------------------------------------------


def write_stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def run_entrypoint(
    tmp_path: Path, args: list[str], env: dict[str, str], migrate_status: int = 0
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    log = tmp_path / "patroli.log"
    write_stub(
        stubs,
        "patroli",
        f'echo "$*" >> "{log}"\n[ "$1" != migrate ] || exit {migrate_status}\n',
    )
    path = os.pathsep.join([str(stubs), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        env={"PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


PG_URL = "postgresql+psycopg://patroli:s3cret@127.0.0.1:5432/patroli"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["patroli", "serve", "--port", "1"], {}, ["serve --port 1"]),
        (
            ["patroli", "serve"],
            {"PATROLI_DATABASE_URL": "sqlite:////tmp/x.db"},
            ["serve"],
        ),
        (
            ["patroli", "serve", "--host", "0.0.0.0"],
            {"PATROLI_DATABASE_URL": PG_URL, "PATROLI_DB_WAIT_TIMEOUT": "0"},
            ["migrate", "serve --host 0.0.0.0"],
        ),
        (
            ["patroli", "serve"],
            {
                "PATROLI_DATABASE_URL": PG_URL,
                "PATROLI_DB_WAIT_TIMEOUT": "0",
                "PATROLI_SKIP_MIGRATE": "1",
            },
            ["serve"],
        ),
        (
            ["patroli", "keys", "create", "--role", "admin"],
            {"PATROLI_DATABASE_URL": PG_URL, "PATROLI_DB_WAIT_TIMEOUT": "0"},
            ["keys create --role admin"],
        ),
        (["--port", "9000"], {}, ["serve --port 9000"]),
        ([], {}, ["serve"]),
    ],
)
def test_entrypoint_migrates_postgres_before_serving(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: list[str]
) -> None:
    result, calls = run_entrypoint(tmp_path, args, env)
    assert result.returncode == 0, result.stderr
    assert calls == expected


def test_entrypoint_does_not_serve_when_migrating_fails(tmp_path: Path) -> None:
    env = {"PATROLI_DATABASE_URL": PG_URL, "PATROLI_DB_WAIT_TIMEOUT": "0"}
    result, calls = run_entrypoint(tmp_path, ["patroli", "serve"], env, migrate_status=3)
    assert result.returncode == 3
    assert calls == ["migrate"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_entrypoint_gives_up_on_an_unreachable_database(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://patroli:s3cret@127.0.0.1:{closed_port()}/patroli"
    env = {"PATROLI_DATABASE_URL": url, "PATROLI_DB_WAIT_TIMEOUT": "1"}
    result, calls = run_entrypoint(tmp_path, ["patroli", "serve"], env)
    assert result.returncode != 0
    assert calls == []
    assert "not reachable" in result.stderr
    assert "s3cret" not in result.stderr


def local_postgres_url() -> str:
    """The test PostgreSQL server (as in conftest.py): skip without one, fail under CI."""
    url = os.environ.get(
        "PATROLI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    psycopg = pytest.importorskip("psycopg")
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        psycopg.connect(plain, connect_timeout=3).close()
    except psycopg.Error as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL server at {make_url(url)!r}: {exc}")
        pytest.skip(f"no PostgreSQL server to wait for: {exc}")
    return url


def test_entrypoint_waits_for_a_reachable_database(tmp_path: Path) -> None:
    env = {
        "PATROLI_DATABASE_URL": local_postgres_url(),
        "PATROLI_DB_WAIT_TIMEOUT": "10",
        "PATROLI_SKIP_MIGRATE": "1",
    }
    result, calls = run_entrypoint(tmp_path, ["patroli", "serve"], env)
    assert result.returncode == 0, result.stderr
    assert calls == ["serve"]


def test_entrypoint_is_posix_sh_and_execs_the_command() -> None:
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    assert os.access(ENTRYPOINT, os.X_OK)
    subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True)
    last = [line.strip() for line in ENTRYPOINT.read_text().splitlines() if line.strip()][-1]
    assert last == 'exec "$@"'


# --- scripts/install-system-deps.sh --------------------------------------------------------

_APT_STUBS = {
    "id": '[ "$1" = -u ] && echo "$STUB_UID" || /usr/bin/id "$@"\n',
    "dpkg-query": r"""fmt=$2; pkg=$3
case "$fmt" in
  *Package*) pattern=$(printf '%s' "$pkg" | sed 's/\[0-9\]\*/[0-9].*/; s/$/$/; s/^/^/')
             grep -E "$pattern" "$STATE/installed" | sed 's/$/ installed/'
             grep -E "$pattern" "$STATE/removed" | sed 's/$/ config-files/' ;;
  *) grep -qx "$pkg" "$STATE/installed" && printf installed || exit 1 ;;
esac
""",
    "apt-get": r"""echo "apt-get $*" >> "$STATE/calls"
case " $* " in
  *" install "*)
    seen=0
    for arg in "$@"; do
      if [ "$seen" = 1 ]; then
        case "$arg" in -*) ;; *)
          echo "$arg" >> "$STATE/installed"
          if [ "$arg" = postgresql ]; then
            echo postgresql-15 >> "$STATE/installed"
            echo "15 main 5432 down postgres /var/lib/postgresql/15/main log" >> "$STATE/clusters"
          fi ;;
        esac
      fi
      [ "$arg" = install ] && seen=1
    done ;;
esac
exit 0
""",
    "apt-cache": "exit 0\n",
    "pg_lsclusters": 'cat "$STATE/clusters"\n',
    "pg_ctlcluster": 'echo "pg_ctlcluster $*" >> "$STATE/calls"\n'
    'sed -i "s/ down / online /" "$STATE/clusters"\n',
    "pg_createcluster": 'echo "pg_createcluster $*" >> "$STATE/calls"\n',
    "sudo": '[ "$STUB_SUDO" = yes ] || exit 1\n'
    '[ "$1" = -n ] && shift\n[ "$1" = true ] && exit 0\n'
    'echo "sudo $*" >> "$STATE/calls"\nexec "$@"\n',
}


def run_system_deps(
    tmp_path: Path,
    installed: list[str],
    clusters: list[str],
    uid: int = 0,
    sudo: bool = False,
    removed: tuple[str, ...] = (),
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    state = tmp_path / "state"
    stubs = tmp_path / "stubs"
    if not state.exists():
        state.mkdir()
        stubs.mkdir()
        for name, body in _APT_STUBS.items():
            write_stub(stubs, name, body)
        (state / "installed").write_text("".join(f"{p}\n" for p in installed))
        (state / "clusters").write_text("".join(f"{c}\n" for c in clusters))
        (state / "removed").write_text("".join(f"{p}\n" for p in removed))
    (state / "calls").write_text("")
    result = subprocess.run(
        ["bash", str(SYSTEM_DEPS)],
        env={
            "PATH": f"{stubs}:/usr/bin:/bin",
            "STATE": str(state),
            "STUB_UID": str(uid),
            "STUB_SUDO": "yes" if sudo else "no",
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, (state / "calls").read_text().splitlines()


ONLINE_15 = "15 main 5432 online postgres /var/lib/postgresql/15/main log"
DOWN_15 = "15 main 5432 down postgres /var/lib/postgresql/15/main log"
EVERYTHING = ["postgresql-15", "postgresql-15-postgis-3", "chromium", "mosquitto", "nginx"]


def test_system_deps_do_nothing_when_all_is_in_place(tmp_path: Path) -> None:
    result, calls = run_system_deps(tmp_path, EVERYTHING, [ONLINE_15])
    assert result.returncode == 0, result.stderr
    assert calls == []
    assert result.stdout == "" and result.stderr == ""


def test_system_deps_add_postgis_for_the_server_version_and_start_it(tmp_path: Path) -> None:
    installed = ["postgresql-16", "postgresql-16-postgis-3-scripts"]
    down_16 = "16 main 5433 down postgres /var/lib/postgresql/16/main log"
    result, calls = run_system_deps(tmp_path, installed, [down_16])
    assert result.returncode == 0, result.stderr
    updates = [call for call in calls if call.endswith(" update")]
    assert updates == ["apt-get -qq -o DPkg::Lock::Timeout=600 update"]
    installs = [call.split() for call in calls if " install " in call]
    assert len(installs) == 1
    assert installs[0][-4:] == ["postgresql-16-postgis-3", "chromium", "mosquitto", "nginx"]
    assert calls[-1] == "pg_ctlcluster --skip-systemctl-redirect 16 main start"
    again, calls = run_system_deps(tmp_path, [], [])
    assert again.returncode == 0 and calls == [], "a second run must find everything in place"


def test_system_deps_ignore_removed_server_versions(tmp_path: Path) -> None:
    installed = ["postgresql-15", "chromium", "mosquitto", "nginx"]
    result, calls = run_system_deps(
        tmp_path, installed, [ONLINE_15], removed=("postgresql-13", "postgresql-13-postgis-3")
    )
    assert result.returncode == 0, result.stderr
    installs = [call.split(" install ", 1)[1] for call in calls if " install " in call]
    assert installs == ["postgresql-15-postgis-3"]


def test_system_deps_install_postgresql_first_on_a_bare_machine(tmp_path: Path) -> None:
    result, calls = run_system_deps(tmp_path, [], [])
    assert result.returncode == 0, result.stderr
    installs = [call.split(" install ", 1)[1].split()[-4:] for call in calls if " install " in call]
    assert installs == [
        ["postgresql"],
        ["postgresql-15-postgis-3", "chromium", "mosquitto", "nginx"],
    ]
    assert sum(" update" in call for call in calls) == 1
    assert calls[-1] == "pg_ctlcluster --skip-systemctl-redirect 15 main start"


def test_system_deps_only_advise_without_root(tmp_path: Path) -> None:
    result, calls = run_system_deps(tmp_path, ["postgresql-15"], [DOWN_15], uid=1000)
    assert result.returncode == 0
    assert calls == []
    assert "apt-get install -y postgresql-15-postgis-3 chromium mosquitto nginx" in result.stderr
    assert "pg_ctlcluster --skip-systemctl-redirect 15 main start" in result.stderr


def test_system_deps_use_sudo_when_not_root(tmp_path: Path) -> None:
    result, calls = run_system_deps(tmp_path, EVERYTHING, [DOWN_15], uid=1000, sudo=True)
    assert result.returncode == 0, result.stderr
    assert calls == [
        "sudo pg_ctlcluster --skip-systemctl-redirect 15 main start",
        "pg_ctlcluster --skip-systemctl-redirect 15 main start",
    ]


# --- Makefile and .ci/run -------------------------------------------------------------------


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A project tree with the real Makefile and .ci/run, and stub tools in .venv/bin."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    tree = tmp_path / "project"
    (tree / ".ci").mkdir(parents=True)
    (tree / "scripts").mkdir()
    (tree / "service").mkdir()
    (tree / "tests").mkdir()
    shutil.copy2(MAKEFILE, tree / "Makefile")
    shutil.copy2(CI_RUN, tree / ".ci" / "run")
    (tree / "scripts" / "install-system-deps.sh").write_text('echo system-deps >> "$CALLS"\n')
    (tree / "pyproject.toml").write_text("")
    (tree / "requirements-dev.lock").write_text("")
    bin_dir = tree / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("ruff", "mypy", "lint-imports", "pytest", "python"):
        status = f"STUB_{tool.upper().replace('-', '_')}_STATUS"
        write_stub(bin_dir, tool, f'echo "{tool} $*" >> "$CALLS"\nexit "${{{status}:-0}}"\n')
    for name in ("pyproject.toml", "requirements-dev.lock"):
        os.utime(tree / name, (1_000_000_000, 1_000_000_000))
    (tree / ".venv" / ".installed").write_text("")
    return tree


def run_ci(tree: Path, **statuses: int) -> tuple[int, list[str]]:
    calls = tree / "calls"
    calls.write_text("")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CALLS": str(calls),
        "CI": "true",
        **{f"STUB_{tool.upper()}_STATUS": str(code) for tool, code in statuses.items()},
    }
    result = subprocess.run(
        [str(tree / ".ci" / "run")],
        cwd=tree.parent,  # .ci/run must find its project from anywhere
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, calls.read_text().splitlines()


def test_ci_runs_system_deps_lint_types_and_tests_in_order(project_copy: Path) -> None:
    status, calls = run_ci(project_copy)
    assert status == 0
    assert calls == [
        "system-deps",
        "system-deps",
        "ruff check service tests",
        "ruff format --check service tests",
        "mypy ",
        "lint-imports ",
        "pytest --durations=15",
    ]


def test_ci_lints_bench_once_it_exists(project_copy: Path) -> None:
    (project_copy / "bench").mkdir()
    _, calls = run_ci(project_copy)
    assert "ruff check service tests bench" in calls


@pytest.mark.parametrize("pytest_status", [1, 5])
def test_ci_fails_when_tests_fail_or_none_are_collected(
    project_copy: Path, pytest_status: int
) -> None:
    status, calls = run_ci(project_copy, pytest=pytest_status)
    assert status != 0
    assert calls[-1].startswith("pytest")


@pytest.mark.parametrize("tool", ["ruff", "mypy", "lint_imports"])
def test_ci_stops_before_tests_when_lint_fails(project_copy: Path, tool: str) -> None:
    status, calls = run_ci(project_copy, **{tool: 1})
    assert status != 0
    assert not any(call.startswith("pytest") for call in calls)


def test_make_test_passes_pytest_args(project_copy: Path) -> None:
    result = subprocess.run(
        ["make", "-s", "-n", "test", "PYTEST_ARGS=-k geo -x"],
        cwd=project_copy,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.splitlines()[-1] == ".venv/bin/pytest -k geo -x"


@pytest.mark.parametrize("changed", ["pyproject.toml", "requirements-dev.lock"])
def test_venv_is_reinstalled_from_the_lock_when_its_inputs_change(
    project_copy: Path, changed: str
) -> None:
    def plan() -> str:
        return subprocess.run(
            ["make", "-n", "venv"], cwd=project_copy, capture_output=True, text=True, check=True
        ).stdout

    assert "pip install" not in plan()
    (project_copy / changed).touch()
    os.utime(project_copy / ".venv" / ".installed", (1_000_000_000, 1_000_000_000))
    steps = [line for line in plan().splitlines() if "pip install" in line]
    assert len(steps) == 2, steps
    assert steps[0].endswith(
        "pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock"
    )
    assert steps[1].endswith("pip install --quiet --disable-pip-version-check --no-deps -e .")


def test_ci_script_is_strict_bash() -> None:
    text = CI_RUN.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(CI_RUN, os.X_OK)
    assert os.access(SYSTEM_DEPS, os.X_OK)
    subprocess.run(["bash", "-n", str(CI_RUN)], check=True)
    subprocess.run(["bash", "-n", str(SYSTEM_DEPS)], check=True)
