"""A process keeps DATABASE_POOL_SIZE connections open between bursts of requests: each new
one costs PostgreSQL a server process and every statement a fresh PREPARE there."""

import asyncio

from sqlalchemy import event, text

from api.main import create_app
from db.session import BURST


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
