"""Webhook delivery benchmark: events per second delivered by the durable per-endpoint workflow
versus raw signed HTTP POSTs per second to the same local receiver, measured in the same run.

    .venv/bin/python -m bench.webhook_delivery --events 2000

Starts its own PostgreSQL database (on the server of --pg), an in-memory Temporal dev server,
the worker and the test suite's verifying receiver; the ratio is the number that matters.
"""

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import httpx
import psycopg
from temporalio.testing import WorkflowEnvironment

from core.security import SecretBox, new_webhook_secret
from core.settings import Settings
from core.temporal import data_converter, dev_server_args, temporal_cli
from core.webhook_rules import signature_header
from db import crud
from db.migrate import upgrade
from db.models import WebhookEndpoint
from db.session import make_engine, make_sessionmaker, transaction
from tests.helpers import WebhookReceiver, eventually
from worker import running_worker
from workflows.webhook_endpoint import EndpointDispatcher

# About the size of a contact.data_verified event with two consents.
SAMPLE_DATA = {
    "journey_id": str(uuid.uuid4()), "campaign": {"id": str(uuid.uuid4()), "name": "Bench"},
    "contact": {"id": str(uuid.uuid4()), "external_id": "crm-1", "first_name": "Ann",
                "last_name": "de Vries"},
    "email": {"address": "ann@example.com", "verification_state": "verified"},
    "consents": [{"key": k, "granted": True, "legal_text": {"text": "x" * 200, "version": "1"}}
                 for k in ("terms", "newsletter")],
}


async def raw_posts(receiver: WebhookReceiver, events: int, parallel: int) -> float:
    """Signed POSTs straight from an HTTP client, `parallel` at a time: the ceiling."""
    name = "raw"
    secret = new_webhook_secret()
    receiver.secrets[name] = secret
    body = json.dumps({"type": "bench", "data": SAMPLE_DATA}, separators=(",", ":"))
    gate = asyncio.Semaphore(parallel)

    async def post(http: httpx.AsyncClient, i: int) -> None:
        now = datetime.now(UTC)
        headers = {"content-type": "application/json", "webhook-id": f"raw-{i}",
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": signature_header(
                       [secret], msg_id=f"raw-{i}", timestamp=now, body=body)}
        async with gate:
            response = await http.post(receiver.url(name), content=body, headers=headers)
            response.raise_for_status()

    async with httpx.AsyncClient() as http:
        started = time.perf_counter()
        await asyncio.gather(*(post(http, i) for i in range(events)))
        return events / (time.perf_counter() - started)


async def durable_delivery(receiver: WebhookReceiver, settings: Settings, temporal,
                           events: int) -> tuple[float, float]:
    """Records the events (as journeys do) and times the endpoint's workflow delivering them.
    Returns (events recorded per second, events delivered per second)."""
    name = "durable"
    secret = new_webhook_secret()
    receiver.secrets[name] = secret
    box = SecretBox(settings.secret_key.get_secret_value())
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    async with transaction(sessions) as session:
        client, _ = await crud.create_client(session, name="Bench")
        endpoint = WebhookEndpoint(client_id=client.id, url=receiver.url(name), events=["*"],
                                   secret_encrypted=box.seal(secret), enabled=True, last_sequence=0)
        session.add(endpoint)
    started = time.perf_counter()
    for i in range(events):
        async with transaction(sessions) as session:
            await crud.record_webhook_event(session, client_id=client.id, key=f"bench/{i}",
                                            type="contact.data_verified", data=SAMPLE_DATA)
    recorded = events / (time.perf_counter() - started)
    await engine.dispose()

    started = time.perf_counter()
    await EndpointDispatcher(temporal, settings).wake(endpoint.client_id, [str(endpoint.id)],
                                                      "bench")

    async def all_there() -> bool:
        return len(receiver.events(name)) >= events
    await eventually(all_there, timeout=600, what=f"{events} deliveries")
    delivered = events / (time.perf_counter() - started)
    assert len({d.id for d in receiver.events(name)}) == events and not receiver.bad_signatures
    return recorded, delivered


async def main(events: int, pg: str) -> None:
    database = f"cj_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    url = f"postgresql+psycopg://{pg.split('://', 1)[1]}/{database}"
    try:
        upgrade(url)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_cli(), dev_server_extra_args=dev_server_args(),
            data_converter=data_converter)
        receiver = WebhookReceiver()
        await receiver.start()
        try:
            settings = Settings(
                database_url=url, temporal_address=env.client.service_client.config.target_host,
                temporal_task_queue=f"bench-{uuid.uuid4().hex[:8]}", dev_mode=True,
                webhook_allow_private_targets=True)
            async with running_worker(env.client, settings):
                raw = await raw_posts(receiver, events, settings.webhook_parallel_per_endpoint)
                recorded, delivered = await durable_delivery(receiver, settings, env.client, events)
        finally:
            await receiver.stop()
            await env.shutdown()
    finally:
        with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    print(f"events: {events}, parallel per endpoint: {settings.webhook_parallel_per_endpoint}, "
          f"batch: {settings.webhook_batch_size}")
    print(f"raw signed POSTs:            {raw:8.0f} /s")
    print(f"durable deliveries:          {delivered:8.0f} /s")
    print(f"events recorded (1 per tx):  {recorded:8.0f} /s")
    print(f"ratio delivered / raw:       {delivered / raw:8.2f}  (target >= 0.5)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server to create the scratch database on")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.pg))
