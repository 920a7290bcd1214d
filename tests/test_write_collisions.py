"""Which failed writes count as lost races (answered, e.g. a 409 naming the winner) and which
as faults of our own (a 500 that is logged): on PostgreSQL, and on the quickstart's SQLite."""

import uuid

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, insert
from sqlalchemy.exc import IntegrityError

from db.crud import collided
from db.session import make_engine

METADATA = MetaData()
PARENT = Table("collision_parent", METADATA, Column("id", Integer, primary_key=True),
               Column("name", String(20), nullable=False, unique=True))
CHILD = Table("collision_child", METADATA, Column("id", Integer, primary_key=True),
              Column("parent_id", ForeignKey("collision_parent.id"), nullable=False))


async def failed_writes(url: str) -> dict[str, IntegrityError]:
    engine = make_engine(url, pool_size=1)
    failures = {}
    try:
        async with engine.begin() as conn:
            await conn.run_sync(METADATA.create_all)
            await conn.execute(insert(PARENT).values(id=1, name="first"))
        for case, table, row in (
                ("taken key", PARENT, {"id": 2, "name": "first"}),
                ("missing parent", CHILD, {"id": 1, "parent_id": 99}),
                ("null in a required column", PARENT, {"id": 3, "name": None})):
            async with engine.connect() as conn:
                with pytest.raises(IntegrityError) as raised:
                    await conn.execute(insert(table).values(**row))
                failures[case] = raised.value
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(METADATA.drop_all)
        await engine.dispose()
    return failures


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_a_taken_key_or_missing_row_is_a_collision_a_null_is_not(
        backend, database_url, tmp_path):
    url = database_url if backend == "postgresql" else \
        f"sqlite+aiosqlite:///{tmp_path}/{uuid.uuid4().hex}.db"
    failures = await failed_writes(url)
    assert {case: collided(err) for case, err in failures.items()} == {
        "taken key": True, "missing parent": True, "null in a required column": False}
