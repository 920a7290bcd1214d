"""The `journeys` command: manage clients, migrate the database, run the dev stack."""

import asyncio
import uuid
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from core.settings import Settings
from core.settings import get_settings as _read_settings

app = typer.Typer(no_args_is_help=True, help=__doc__)
clients_app = typer.Typer(no_args_is_help=True, help="Clients (businesses) and their API keys.")
db_app = typer.Typer(no_args_is_help=True, help="The database of record.")
app.add_typer(clients_app, name="clients")
app.add_typer(db_app, name="db")


def get_settings() -> Settings:
    """The settings, or a line per refused one naming its variable (not a traceback)."""
    try:
        return _read_settings()
    except ValidationError as err:
        for problem in err.errors():
            name = ".".join(str(part) for part in problem["loc"]).upper()
            # A field's own message already starts with its variable's name.
            message = problem["msg"].removeprefix("Value error, ")
            typer.echo(message if message.startswith(name.split(".")[0] + ":") or not name
                       else f"{name}: {message}", err=True)
        raise typer.Exit(2) from None


# For someone who runs the command elsewhere than in the directory of `make run` (a new terminal
# opens in ~), or before the stack first started: the database the command tried, and the fix.
RUN_HERE = ("run `journeys` in the directory `make run` runs in (its .data/ holds the database), "
            "or set DATABASE_URL to the stack's database")
UPGRADE = "`journeys db upgrade` creates the tables (`make run` does it as it starts)"


def _database_shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _missing_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, when it does not exist: connecting would create an empty one."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    return None if path.exists() else path.absolute()


def _database_failure(url: str, err: Exception) -> typer.Exit:
    orig = getattr(err, "orig", None)
    no_tables = "no such table" in str(orig) or getattr(orig, "sqlstate", None) == "42P01"
    sqlite = url.startswith("sqlite")
    hint = (UPGRADE if no_tables else RUN_HERE if sqlite else
            "check that the server is up and DATABASE_URL names the stack's database")
    typer.echo(f"cannot use the database {_database_shown(url)}: "
               f"{str(orig or err).strip().splitlines()[0]}; {hint}", err=True)
    return typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations to DATABASE_URL."""
    from db.migrate import upgrade

    upgrade(get_settings().database_url)
    typer.echo("database is up to date")


@db_app.command("revision")
def db_revision(
    message: Annotated[str, typer.Argument(help="What the schema change is, e.g. 'journey notes'")],
) -> None:
    """Write the next migration from what the models add to DATABASE_URL's schema."""
    from db.migrate import new_revision

    typer.echo(new_revision(get_settings().database_url, message))


async def _in_transaction(work):  # noqa: ANN001, ANN202 - a coroutine function of a session
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from db.session import make_engine, make_sessionmaker, transaction

    url = get_settings().database_url
    if (missing := _missing_sqlite_file(url)) is not None:
        typer.echo(f"no database at {missing} ({_database_shown(url)}): {RUN_HERE}", err=True)
        raise typer.Exit(1)
    engine = make_engine(url)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            return await work(session)
    except (OperationalError, ProgrammingError) as err:
        if isinstance(err, ProgrammingError) and getattr(err.orig, "sqlstate", None) != "42P01":
            raise  # a fault of the command, not of where it ran
        raise _database_failure(url, err) from None
    finally:
        await engine.dispose()


def _client_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        # A usage error (exit 2) naming the argument, not a traceback.
        raise typer.BadParameter(f"{value!r} is not a client id (a UUID, as `journeys clients "
                                 "list` shows them)") from None


ClientId = Annotated[uuid.UUID, typer.Argument(help="The client's id", parser=_client_id,
                                               metavar="CLIENT_ID")]


def _no_client(client_id: uuid.UUID) -> typer.Exit:
    typer.echo(f"no client {client_id} (`journeys clients list` shows them)", err=True)
    return typer.Exit(1)


def _show_key(key: str) -> None:
    typer.echo(f"api_key:   {key}")
    typer.echo("Store the key now: only its hash is kept.", err=True)


def _one_line(value: str, hint: str) -> None:
    from api.schemas import one_line

    try:
        one_line(value)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=hint) from None


def _printable_on_letters(name: str, settings: Settings) -> None:
    """Letters print the name in the letterhead (bold) and under the closing: fpdf2 would leave
    out the characters their font has no glyph for, and the letters go out signed by nobody."""
    from api.schemas import LETTER_FONTS
    from messaging.letter_pdf import LetterFontError, unprintable

    for font, setting in LETTER_FONTS.values():
        try:
            problem = unprintable(name, getattr(settings, font), setting)
        except LetterFontError as err:
            typer.echo(str(err), err=True)
            raise typer.Exit(1) from None
        if problem:
            raise typer.BadParameter(f"{problem}; its letters would show a blank letterhead "
                                     "and signature", param_hint="NAME")


@clients_app.command("create")
def clients_create(
    name: Annotated[str, typer.Argument(help="The client's name, shown to its customers")],
    language: Annotated[str, typer.Option(help="Default language of its customers")] = "en",
) -> None:
    """Create a client and print its first API key (shown only this once)."""
    from db import crud
    from messaging.rendering import supported_languages
    from messaging.sms import sms_length_problem

    # Blank, it would stand before every subject line: "Subject: : please confirm...".
    name = name.strip()
    if not name:
        raise typer.BadParameter("must not be blank", param_hint="NAME")
    # A line break would cut every subject; a control character stop every mail.
    _one_line(name, "NAME")
    settings = get_settings()
    problem = sms_length_problem(name, settings)
    if problem is not None:
        raise typer.BadParameter(problem, param_hint="NAME")
    _printable_on_letters(name, settings)
    if language not in supported_languages():
        raise typer.BadParameter(f"one of {', '.join(supported_languages())}",
                                 param_hint="--language")

    async def create(session):  # noqa: ANN001, ANN202
        client, key = await crud.create_client(session, name=name, default_language=language)
        return str(client.id), key
    client_id, key = asyncio.run(_in_transaction(create))
    typer.echo(f"client_id: {client_id}")
    _show_key(key)


@clients_app.command("add-key")
def clients_add_key(
    client_id: ClientId,
    name: Annotated[str, typer.Option(help="What the key is for, e.g. 'crm'")] = "default",
) -> None:
    """Give a client another API key (to replace one: add, switch, then revoke the old)."""
    from db import crud
    from db.models import ApiKey, Client

    name = name.strip()
    # Checked here, as the database would refuse it with a traceback.
    limit = ApiKey.__table__.c.name.type.length
    if not name or len(name) > limit:
        raise typer.BadParameter(f"1 to {limit} characters", param_hint="--name")
    _one_line(name, "--name")  # `keys` prints one line per key

    async def add(session):  # noqa: ANN001, ANN202
        if await session.get(Client, client_id) is None:
            return None
        return await crud.create_api_key(session, client_id=client_id, name=name)
    key = asyncio.run(_in_transaction(add))
    if key is None:
        raise _no_client(client_id)
    _show_key(key)


@clients_app.command("keys")
def clients_keys(client_id: ClientId) -> None:
    """List a client's API keys by their non-secret head (the part after cj_), with the id the
    audit trail and change logs name the key by (`actor` `{"type": "api_key", "id": ...}`)."""
    from sqlalchemy import select

    from db.models import ApiKey, Client

    async def keys(session):  # noqa: ANN001, ANN202
        if await session.get(Client, client_id) is None:
            return None
        return list(await session.scalars(select(ApiKey).where(
            ApiKey.client_id == client_id).order_by(ApiKey.created_at)))
    found = asyncio.run(_in_transaction(keys))
    if found is None:
        raise _no_client(client_id)
    for key in found:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        used = (f"last used {key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at
                else "never used")
        typer.echo(f"{key.prefix}  {key.name}  id {key.id}  "
                   f"created {key.created_at:%Y-%m-%d %H:%M}  {used}  {state}")


@clients_app.command("list")
def clients_list() -> None:
    """List the clients: id, name, when created, and how many API keys are active."""
    from sqlalchemy import func, select

    from db.models import ApiKey, Client

    async def clients(session):  # noqa: ANN001, ANN202
        active = (select(ApiKey.client_id, func.count().label("active_keys"))
                  .where(ApiKey.revoked_at.is_(None)).group_by(ApiKey.client_id).subquery())
        return (await session.execute(
            select(Client.id, Client.name, Client.created_at, func.coalesce(active.c.active_keys, 0))
            .outerjoin(active, active.c.client_id == Client.id).order_by(Client.created_at))).all()
    for client_id, name, created_at, keys in asyncio.run(_in_transaction(clients)):
        typer.echo(f"{client_id}  {name}  created {created_at:%Y-%m-%d %H:%M}  "
                   f"{keys} active key{'' if keys == 1 else 's'}")


@clients_app.command("revoke-key")
def clients_revoke_key(
    key: Annotated[str, typer.Argument(
        metavar="HEAD", help="The key's head, as `journeys clients keys` lists it, or the key")],
) -> None:
    """Revoke an API key at once: every request with it gets a 401 from then on."""
    from sqlalchemy import select

    from core.security import API_KEY_PREFIX
    from db.models import ApiKey, utcnow

    # A leaked key is at hand whole: given so (or as cj_<head>), it is revoked all the same,
    # where "no active key" would read as if it were harmless already.
    head = key.strip()
    if head.startswith(API_KEY_PREFIX):
        head = head[len(API_KEY_PREFIX):].partition("_")[0]

    async def revoke(session):  # noqa: ANN001, ANN202
        found = (await session.scalars(select(ApiKey).where(ApiKey.prefix == head)
                                       .with_for_update())).one_or_none()
        if found is None:
            return "unknown", None
        if found.revoked_at is not None:
            return "revoked before", found.revoked_at
        found.revoked_at = utcnow()
        return "revoked", None
    outcome, revoked_at = asyncio.run(_in_transaction(revoke))
    if outcome == "unknown":
        typer.echo(f"no key {head} (`journeys clients keys <client id>` lists a client's keys)",
                   err=True)
        raise typer.Exit(1)
    if outcome == "revoked before":
        typer.echo(f"no active key {head}: revoked {revoked_at:%Y-%m-%d %H:%M}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {head}")


@app.command("dev")
def dev() -> None:
    """Run the whole stack locally: Temporal dev server + UI, SMTP sink, worker and API."""
    from devstack import run

    run(get_settings())


if __name__ == "__main__":
    app()
