"""Apply the Alembic migrations (`migrations/`, packaged as `service/migrations/`) to a database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine


def migrations_dir() -> Path:
    """The folder holding the Alembic environment (in the package, next to it, or in the cwd)."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (
        # A built wheel carries the migrations as service/migrations (see pyproject.toml).
        package / "migrations",
        # A checkout or an editable install: the repository's top-level folder.
        package.parent / "migrations",
        Path.cwd() / "migrations",
    ):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(
        f"migrations/ folder not found in the package ({package}), next to it or in the cwd"
    )


def alembic_config(database_url: str) -> Config:
    """An Alembic config for the bundled migrations and a database URL."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to `revision`."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None when never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this version."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return script.get_current_head()
