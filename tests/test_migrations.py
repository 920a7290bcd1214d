"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from alembic import command

from db.migrate import alembic_config, upgrade


def test_models_and_migrations_agree(database_url):
    # Raises when a model change has no migration (the fixture migrated this database).
    command.check(alembic_config(database_url))


def test_sqlite_upgrade_downgrade_upgrade(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/dev.db"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    upgrade(url)
    command.check(alembic_config(url))
