"""The `journeys` command: manage clients, migrate the database, run the dev stack."""

import asyncio
from typing import Annotated

import typer

from core.settings import get_settings

app = typer.Typer(no_args_is_help=True, help=__doc__)
clients_app = typer.Typer(no_args_is_help=True, help="Clients (businesses) and their API keys.")
db_app = typer.Typer(no_args_is_help=True, help="The database of record.")
app.add_typer(clients_app, name="clients")
app.add_typer(db_app, name="db")


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


async def _create_client(name: str, language: str) -> tuple[str, str]:
    from db import crud
    from db.session import make_engine, make_sessionmaker, transaction

    engine = make_engine(get_settings().database_url)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            client, key = await crud.create_client(session, name=name, default_language=language)
            return str(client.id), key
    finally:
        await engine.dispose()


@clients_app.command("create")
def clients_create(
    name: Annotated[str, typer.Argument(help="The client's name, shown to its customers")],
    language: Annotated[str, typer.Option(help="Default language of its customers")] = "en",
) -> None:
    """Create a client and print its first API key (shown only this once)."""
    client_id, key = asyncio.run(_create_client(name, language))
    typer.echo(f"client_id: {client_id}")
    typer.echo(f"api_key:   {key}")
    typer.echo("Store the key now: only its hash is kept.", err=True)


@app.command("dev")
def dev() -> None:
    """Run the whole stack locally: Temporal dev server + UI, SMTP sink, worker and API."""
    from devstack import run

    run(get_settings())


if __name__ == "__main__":
    app()
