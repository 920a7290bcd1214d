"""Runs the Temporal worker: the journey and webhook endpoint workflows and the activities that
do their I/O."""

import asyncio
from datetime import timedelta
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.campaign_launch import CampaignLauncher
from activities.client_messages import ClientMessageSender
from activities.codes import CodeSender
from activities.contact_gdpr import ContactRetention
from activities.contact_import import ContactImporter
from activities.history_erasure import HistoryEraser
from activities.journey_records import JourneyRecords
from activities.lost_journeys import LostJourneySweep
from activities.kyc import KycActivities
from activities.messages import MessageSender
from activities.reconsent import Reconsent
from activities.retention import Retention
from activities.webhooks import WebhookSender
from api.kyc_profiles import rejudge_stale_document_expiries
from core.contracts import AnonymiseInactiveInput, ForgetErasedHistoriesInput
from core.public_transport import public_only_transport
from core.security import SecretBox
from core.settings import Settings, get_settings
from core.temporal import connect
from db.session import make_engine, make_sessionmaker
from messaging.email import SmtpSender
from messaging.letters import make_letter_sender
from messaging.sms import make_sms_sender
from workflows.campaign_launch import CampaignLaunchWorkflow
from workflows.client_message import ClientMessageWorkflow
from workflows.contact_anonymisation import SCHEDULE_ID, AnonymiseInactiveContactsWorkflow
from workflows.contact_import import ContactImportWorkflow
from workflows.held_journeys import WakeHeldJourneysWorkflow
from workflows.history_erasure import SCHEDULE_ID as FORGET_SCHEDULE_ID
from workflows.history_erasure import ForgetErasedHistoriesWorkflow
from workflows.journey import JourneyWorkflow
from workflows.kyc import KycWorkflow
from workflows.lost_journeys import SCHEDULE_ID as LOST_SCHEDULE_ID
from workflows.lost_journeys import EndLostJourneysWorkflow
from workflows.reconsent import ReconsentRunWorkflow
from workflows.retention import SCHEDULE_ID as PURGE_SCHEDULE_ID
from workflows.retention import PurgeUnverifiedDataWorkflow
from workflows.webhook_delivery import DeliverWebhooksWorkflow
from workflows.webhook_endpoint import EndpointDispatcher, WebhookEndpointWorkflow

# DeliverWebhooks only finishes runs started before per-endpoint delivery.
WORKFLOWS = [JourneyWorkflow, WebhookEndpointWorkflow, ClientMessageWorkflow,
             ReconsentRunWorkflow, PurgeUnverifiedDataWorkflow, KycWorkflow,
             ContactImportWorkflow, AnonymiseInactiveContactsWorkflow, DeliverWebhooksWorkflow,
             EndLostJourneysWorkflow, ForgetErasedHistoriesWorkflow]
# Every workflow whose recorded histories tests/test_replay.py replays.
REPLAYED = [*WORKFLOWS, CampaignLaunchWorkflow]


@asynccontextmanager
async def running_worker(client: Client, settings: Settings) -> AsyncIterator[list[Worker]]:
    """The started workers of the task queues `settings` has this process poll, with their
    database pool and HTTP clients, stopped on exit."""
    engine = make_engine(settings.database_url, settings.database_pool_size)
    sessions = make_sessionmaker(engine)
    # Idle connections are dropped before receivers' idle timeouts (often 5 s) close them,
    # so a delivery is not spent on a connection the other side already closed.
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=2.0)
    # Redirects are not followed: a receiver could bounce a delivery to an internal address.
    # The providers' adapters share the first client (their URLs are the operator's); the
    # clients' webhook URLs get a transport that connects to public addresses only.
    async with httpx.AsyncClient(
        timeout=settings.webhook_timeout_seconds, follow_redirects=False, limits=limits,
    ) as http, httpx.AsyncClient(
        timeout=settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False,
        limits=limits, transport=None if settings.private_webhook_targets_allowed
        else public_only_transport(limits),
    ) as webhook_http:
        dispatcher = EndpointDispatcher(client, settings)
        records = JourneyRecords(sessions, settings, dispatcher, client)
        smtp = SmtpSender(settings)
        sms = make_sms_sender(settings, http)
        sender = MessageSender(sessions, settings, smtp, sms, make_letter_sender(settings, http),
                               dispatcher)
        client_messages = ClientMessageSender(sessions, settings, smtp, dispatcher)
        reconsent = Reconsent(sessions, settings, client, dispatcher)
        codes = CodeSender(sessions, settings, sms)
        retention = Retention(sessions, settings)
        kyc = KycActivities(sessions, settings, smtp, sms, dispatcher)
        webhooks = WebhookSender(
            sessions, webhook_http, SecretBox(settings.secret_key.get_secret_value()), dispatcher,
            allow_private_targets=settings.private_webhook_targets_allowed)
        importer = ContactImporter(sessions, settings)
        contact_retention = ContactRetention(sessions, settings)
        launcher = CampaignLauncher(sessions, settings, client, dispatcher)
        lost = LostJourneySweep(sessions, client, dispatcher, settings)
        eraser = HistoryEraser(sessions, client)
        runner = ({} if settings.worker_workflow_sandbox
                  else {"workflow_runner": UnsandboxedWorkflowRunner()})
        workers: list[Worker] = []
        if settings.temporal_task_queue in settings.polled_task_queues:
            workers.append(Worker(
                client,
                task_queue=settings.temporal_task_queue,
                workflows=WORKFLOWS,
                max_cached_workflows=settings.worker_max_cached_workflows,
                max_concurrent_activities=settings.worker_max_concurrent_activities,
                **runner,
                activities=[
                    records.record_stage,
                    records.record_submission,
                    records.record_verification,
                    records.finish_journey,
                    records.message_category,
                    records.record_consent_answer,
                    sender.send_message,
                    sender.record_signalled_bounce,
                    client_messages.send_client_message,
                    reconsent.reconsent_batch,
                    codes.send_code,
                    codes.check_code,
                    retention.purge_unverified,
                    webhooks.deliver_due,
                    webhooks.deliver_webhook,
                    kyc.evaluate_kyc,
                    kyc.record_kyc,
                    kyc.send_kyc_email,
                    importer.plan_import,
                    importer.import_batch,
                    importer.enrol_imported,
                    importer.finish_import,
                    contact_retention.clients_with_retention,
                    contact_retention.anonymise_inactive,
                    contact_retention.apply_blocked_consequences,
                    lost.end_lost_journeys,
                    eraser.forget_erased_histories,
                ],
            ))
        if settings.launch_task_queue in settings.polled_task_queues:
            # Launches (and wake-ups of held journeys) poll a queue of their own: a batch is
            # never queued behind the invitations of the journeys that earlier batches started,
            # nor a progress query behind their tasks.
            workers.append(Worker(
                client, task_queue=settings.launch_task_queue,
                workflows=[CampaignLaunchWorkflow, WakeHeldJourneysWorkflow],
                activities=[launcher.begin_launch, launcher.launch_batch, launcher.finish_launch,
                            launcher.withdraw_unreached_journeys, launcher.wake_held_journeys],
                max_cached_workflows=settings.worker_max_cached_workflows, **runner))
        try:
            async with AsyncExitStack() as running:
                for worker in workers:
                    await running.enter_async_context(worker)
                if settings.temporal_task_queue in settings.polled_task_queues:
                    # Profiles dated before migration 0900 by the old reading of a document's
                    # date follow the documents it moved; after that, this finds none.
                    if told := await rejudge_stale_document_expiries(sessions, client, settings):
                        logging.getLogger("worker").info(
                            "%d KYC profiles dated by a document judged again", told)
                yield workers
        finally:
            await smtp.connections.close()
            await engine.dispose()


async def ensure_schedule(client: Client, schedule_id: str, action: ScheduleActionStartWorkflow,
                          every: timedelta) -> None:
    """Creates a schedule once; an existing one is left as operators may have tuned it."""
    try:
        await client.create_schedule(schedule_id, Schedule(
            action=action, spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)])))
    except ScheduleAlreadyRunningError:
        pass


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    """The periodic jobs (visible and pausable in the Temporal UI): the purge of unverified data,
    the batch anonymisation of inactive contacts, the sweep of lost journeys and the deletion
    of erased contacts' workflow histories. Returns their schedules' ids."""
    queue = settings.temporal_task_queue
    jobs = [
        (PURGE_SCHEDULE_ID, ScheduleActionStartWorkflow(
            PurgeUnverifiedDataWorkflow.run, id=PURGE_SCHEDULE_ID, task_queue=queue),
         timedelta(days=1)),
        (SCHEDULE_ID, ScheduleActionStartWorkflow(
            AnonymiseInactiveContactsWorkflow.run, AnonymiseInactiveInput(), id=SCHEDULE_ID,
            task_queue=queue), settings.anonymise_inactive_every),
        (LOST_SCHEDULE_ID, ScheduleActionStartWorkflow(
            EndLostJourneysWorkflow.run, id=LOST_SCHEDULE_ID, task_queue=queue),
         settings.end_lost_journeys_every),
        (FORGET_SCHEDULE_ID, ScheduleActionStartWorkflow(
            ForgetErasedHistoriesWorkflow.run, ForgetErasedHistoriesInput(),
            id=FORGET_SCHEDULE_ID, task_queue=queue), settings.forget_erased_histories_every),
    ]
    for schedule_id, action, every in jobs:
        await ensure_schedule(client, schedule_id, action, every)
    return [schedule_id for schedule_id, _, _ in jobs]


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # fpdf2's font subsetting logs every letter's glyph list at INFO; httpx logs each request's
    # full URL, and a client's webhook URL may carry its receiver's secret (`?token=`).
    for name in ("fontTools", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


async def main() -> None:
    configure_logging()
    settings = get_settings()
    client = await connect(settings)
    await ensure_schedules(client, settings)
    async with running_worker(client, settings):
        logging.getLogger("worker").info("worker polling task queues %s on %s",
                                         settings.polled_task_queues, settings.temporal_address)
        await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
