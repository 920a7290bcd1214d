"""Schema migrations with Alembic, callable from the CLI, the dev stack and the tests."""

import os
import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).parent / "migrations"


def sync_url(database_url: str) -> str:
    # Alembic runs synchronously; psycopg 3 serves both modes, SQLite needs its sync driver.
    return database_url.replace("sqlite+aiosqlite", "sqlite")


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    if database_url.startswith("sqlite"):
        Path(database_url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


def new_revision(database_url: str, message: str, versions: Path | None = None) -> Path:
    """Writes the next migration after the head, numbered after the highest revision (the
    numbers are not in chain order), holding what the models add to the schema of the database
    at `database_url`, which is first brought to the head. `versions` writes it elsewhere."""
    upgrade(database_url)
    cfg = alembic_config(database_url)
    number = max(int(script.revision.split("_", 1)[0])
                 for script in ScriptDirectory.from_config(cfg).walk_revisions())
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40]
    cfg.set_main_option("file_template", "%%(rev)s")
    if versions is not None:
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option("version_locations", os.pathsep.join(
            [str(MIGRATIONS / "versions"), str(versions)]))
    script = command.revision(cfg, message=message, autogenerate=True,
                              rev_id=f"{number + 10:04d}_{slug}",
                              version_path=str(versions) if versions else None)
    return Path(script.path)
