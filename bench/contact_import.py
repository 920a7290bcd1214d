"""Import benchmark: rows/s of a CSV contact import through the API and its workflow, against a
raw PostgreSQL COPY of the same file in the same run, printed as a ratio.

    .venv/bin/python -m bench.contact_import [--rows 100000]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth); starts its own Temporal dev
server, worker and API in this process, on a database of its own that it drops afterwards.
"""

import argparse
import asyncio
import time
import uuid
from collections import defaultdict

import httpx
import psycopg
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from core.settings import Settings
from core.temporal import data_converter, dev_server_args, temporal_cli
from db import crud
from db.migrate import upgrade
from db.session import make_engine, make_sessionmaker, transaction
from tests.test_contact_import import HEADER, RULE, contacts_file
from worker import running_worker
from workflows.contact_import import import_workflow_id

SERVER = "postgresql://postgres@127.0.0.1:5432"


async def import_through_the_api(url: str, env: WorkflowEnvironment, content: bytes) -> float:
    settings = Settings(database_url=url,
                        temporal_address=env.client.service_client.config.target_host,
                        temporal_task_queue=f"bench-{uuid.uuid4().hex[:8]}",
                        secret_key="bench-" + uuid.uuid4().hex)
    engine = make_engine(url)
    async with transaction(make_sessionmaker(engine)) as session:
        _, key = await crud.create_client(session, name="Bench")
    await engine.dispose()
    app = create_app(settings)
    auth = {"Authorization": f"Bearer {key}"}
    async with running_worker(env.client, settings), app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                              timeout=120) as http:
        await http.patch("/v1/contact-settings", headers=auth, json={"person_rule": RULE})
        started = time.perf_counter()
        response = await http.post("/v1/contact-imports", content=content,
                                   headers={**auth, "content-type": "text/csv"})
        response.raise_for_status()
        job = response.json()
        while job["status"] != "completed":
            await asyncio.sleep(0.2)
            job = (await http.get(f"/v1/contact-imports/{job['id']}", headers=auth)).json()
        elapsed = time.perf_counter() - started
        await print_activity_times(env, import_workflow_id(job["id"]))
    assert job["created"] == job["total_rows"], job
    return elapsed


async def print_activity_times(env: WorkflowEnvironment, workflow_id: str) -> None:
    """Where the time went: seconds per activity type, from the workflow's history."""
    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
    names, started, totals = {}, {}, defaultdict(float)
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled = event.activity_task_scheduled_event_attributes
            names[event.event_id] = scheduled.activity_type.name
        elif event.HasField("activity_task_started_event_attributes"):
            started[event.activity_task_started_event_attributes.scheduled_event_id] = \
                event.event_time.ToDatetime()
        elif event.HasField("activity_task_completed_event_attributes"):
            scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
            totals[names[scheduled]] += (event.event_time.ToDatetime()
                                         - started[scheduled]).total_seconds()
    for name, seconds in totals.items():
        print(f"  {name}: {seconds:.2f} s")


def raw_copy(url: str, content: bytes) -> float:
    columns = ", ".join(f'"{c}" text' for c in HEADER)
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute(f"CREATE TABLE raw_contacts ({columns})")
        started = time.perf_counter()
        with conn.cursor().copy("COPY raw_contacts FROM STDIN (FORMAT csv, HEADER true, "
                                "DELIMITER ';')") as copy:
            copy.write(content.removeprefix("\ufeff".encode()))
        conn.commit()
        return time.perf_counter() - started


async def main(rows: int) -> None:
    name = f"cj_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url)
        content, _ = contacts_file(uuid.uuid4().hex[:6], rows, bad_every=None)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_cli(), dev_server_extra_args=dev_server_args(),
            data_converter=data_converter)
        try:
            ours = await import_through_the_api(url, env, content)
        finally:
            await env.shutdown()
        copy = raw_copy(url, content)
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"rows: {rows}")
    print(f"import (API + workflow, validated, deduplicated, audited): {ours:.2f} s, "
          f"{rows / ours:,.0f} rows/s")
    print(f"raw COPY into an untyped table: {copy:.2f} s, {rows / copy:,.0f} rows/s")
    print(f"ratio import/COPY throughput: {copy / ours:.3f} (COPY is {ours / copy:.0f}x faster)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().rows))
