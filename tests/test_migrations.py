"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from alembic import command
from alembic.script import ScriptDirectory

from db.migrate import alembic_config, new_revision, upgrade


def test_models_and_migrations_agree(database_url):
    # Raises when a model change has no migration (the fixture migrated this database).
    command.check(alembic_config(database_url))


def test_sqlite_upgrade_downgrade_upgrade(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/dev.db"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    upgrade(url)
    command.check(alembic_config(url))


def test_a_new_revision_follows_the_head(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/dev.db"
    versions = tmp_path / "versions"
    versions.mkdir()
    path = new_revision(url, "Journey notes!", versions)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    text = path.read_text()
    assert path.parent == versions and path.stem.endswith("_journey_notes")
    assert f"down_revision = '{head}'" in text
    # The models and the migrations agree, so there is nothing to migrate.
    assert "op." not in text
