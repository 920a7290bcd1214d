"""A process keeps DATABASE_POOL_SIZE connections open between bursts of requests: each new
one costs PostgreSQL a server process and every statement a fresh PREPARE there."""

import asyncio

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from api.main import create_app
from db.session import BURST, make_counter_engine, make_engine


async def test_the_api_keeps_its_pool_of_connections_between_bursts(settings):
    own = settings.model_copy(update={"database_pool_size": 3})
    app = create_app(own)
    async with app.router.lifespan_context(app):
        sessions = app.state.journeys.sessions
        opened = 0

        @event.listens_for(sessions.kw["bind"].sync_engine, "connect")
        def count(*_) -> None:  # noqa: ANN002
            nonlocal opened
            opened += 1

        async def burst(requests: int) -> None:
            all_hold_one = asyncio.Barrier(requests)

            async def request() -> None:
                async with sessions() as session:
                    await session.execute(text("SELECT 1"))
                    await all_hold_one.wait()

            await asyncio.wait_for(asyncio.gather(*(request() for _ in range(requests))), 30)

        await burst(3 + BURST)
        assert opened == 3 + BURST
        # The pool's three served the next burst of three; the burst's ten were closed.
        await burst(3)
        assert opened == 3 + BURST
        await burst(3 + 2)
        assert opened == 3 + BURST + 2


@pytest.mark.parametrize("engine_of", [make_engine, make_counter_engine])
async def test_a_failed_statement_does_not_quote_what_customers_typed(database_url, engine_of):
    """The error of a failed statement is logged, and carried into Temporal's failures."""
    engine = engine_of(database_url)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as raised:
                await conn.execute(text("SELECT 1 / 0 WHERE CAST(:email AS text) <> ''"),
                                   {"email": "ann.private@example.com"})
    finally:
        await engine.dispose()
    assert "division by zero" in str(raised.value)
    assert "ann.private" not in str(raised.value)
