"""Engine and session factories: one session per API request, one per activity call; and what
to do only once a session has committed (files, webhook wake-ups)."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, SessionTransaction

_ON_COMMIT = "on_commit"
_AFTER_COMMIT: set[asyncio.Task[None]] = set()  # held until done, so none is collected midway
log = logging.getLogger(__name__)
# Every statement is prepared on its connection the first time it runs there (psycopg waits for
# the sixth by default): pages and activities run the same few statements over and over, and
# PostgreSQL, on the same cores as us, then parses and plans each once per connection. In the
# bench that cut its CPU per first contact page visit from 3.9 to 3.1 ms (bench/README.md).
PREPARED = {"prepare_threshold": 0}
# Connections a pool opens beyond its size in a burst, each closed once it is returned.
BURST = 10
# No JIT compilation: PostgreSQL compiles a statement it expects to be costly, as ours over a
# whole campaign are, yet they run in a second or two, which compiling only lengthened: the
# funnel of a 100,000-journey campaign answered in 1.7 s, 1.1 s without.
NO_JIT = "-c jit=off"


# Every engine hides a statement's parameters from its errors: they would carry what customers
# typed (emails, IP addresses) into the logs and into Temporal's failure messages.
def make_engine(database_url: str, pool_size: int = 20) -> AsyncEngine:
    if database_url.startswith("sqlite"):
        engine = create_async_engine(database_url, connect_args={"timeout": 30},
                                     hide_parameters=True)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            # WAL lets the API read while the worker writes; FKs are off by default in SQLite.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_async_engine(database_url, pool_size=pool_size, max_overflow=BURST,
                               pool_pre_ping=True, connect_args={**PREPARED, "options": NO_JIT},
                               hide_parameters=True)


def make_counter_engine(database_url: str) -> AsyncEngine | None:
    """Connections for counters that may be lost in a crash (the form posts' rate limits): each
    statement commits on its own, without waiting for its WAL flush. A hot counter (every
    customer behind one IP) is then locked for one statement, not for a transaction's four round
    trips. None for SQLite, which serialises writers anyway: use the main engine."""
    if database_url.startswith("sqlite"):
        return None
    return create_async_engine(
        database_url, pool_size=5, max_overflow=5, pool_pre_ping=True, hide_parameters=True,
        isolation_level="AUTOCOMMIT",
        connect_args={**PREPARED, "options": "-c synchronous_commit=off"})


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session that commits on success and rolls back on error (for activities and the CLI)."""
    async with sessions() as session, session.begin():
        yield session


def on_commit(session: AsyncSession, action: Callable[[], None]) -> None:
    """Runs `action` once the session's transaction has committed, and never if it does not:
    for what a rollback cannot undo (files), which must not happen for a change that did not."""
    session.info.setdefault(_ON_COMMIT, []).append(action)


def after_commit(session: AsyncSession, action: Callable[[], Awaitable[None]]) -> None:
    """Runs the coroutine `action` makes once the session has committed (as `on_commit`), for
    what others must only see committed: waking webhook endpoints for events written here."""
    def start() -> None:
        task = asyncio.get_running_loop().create_task(action())
        _AFTER_COMMIT.add(task)
        task.add_done_callback(_done)
    on_commit(session, start)


def _done(task: asyncio.Task[None]) -> None:
    _AFTER_COMMIT.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("after commit", exc_info=task.exception())


@event.listens_for(Session, "after_commit")
def _run_on_commit(session: Session) -> None:
    # A savepoint's release is not the commit: its work can still be rolled back.
    if not session.in_nested_transaction():
        for action in session.info.pop(_ON_COMMIT, []):
            action()


@event.listens_for(Session, "after_transaction_end")
def _forget_on_rollback(session: Session, transaction: SessionTransaction) -> None:
    # What is left when the outermost transaction ends was not committed.
    if transaction.parent is None:
        session.info.pop(_ON_COMMIT, None)
