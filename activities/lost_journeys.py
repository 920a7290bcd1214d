"""Ends the journeys whose workflow an operator terminated (or that failed or timed out) and
that nobody has met since: the database held them open, so reports counted them as waiting and
they blocked their contact's erasure. Customers, enrolments and launches end the ones they meet
(api.lost_journeys); this finds the rest through Temporal's visibility store. It also starts
again the KYC profiles whose workflow is gone (their reminder and expiry live in it), and wakes
the webhook endpoints whose deliveries are overdue, as one whose workflow is gone would
otherwise retry nothing until the endpoint's next event."""

from collections import defaultdict

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client as TemporalClient

from activities.webhooks import EndpointWaker
from api import lost_journeys
from api.kyc_profiles import start_again
from api.lost_workflows import ENDED_WITHOUT_A_WORD, how_lost
from contacts.gdpr import OPEN_JOURNEY
from core.contracts import EndLostJourneysResult
from core.settings import Settings
from core.vocabulary import DeliveryStatus
from db import crud
from db.kyc_models import KycProfile
from db.models import Contact, Journey, WebhookDelivery, WebhookEndpoint, utcnow
from db.session import transaction

ENDED = "ExecutionStatus IN ({})".format(", ".join(
    f"'{status.name.title().replace('_', '')}'" for status in sorted(ENDED_WITHOUT_A_WORD)))
GONE = f"WorkflowType = 'Journey' AND {ENDED}"
# A cancelled profile goes on in a new run: only these end one.
PROFILES_GONE = f"WorkflowType = 'Kyc' AND {ENDED}"
PAGE = 500


class LostJourneySweep:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], temporal: TemporalClient,
                 waker: EndpointWaker, settings: Settings) -> None:
        self._sessions = sessions
        self._temporal = temporal
        self._waker = waker
        self._settings = settings

    @activity.defn
    async def end_lost_journeys(self) -> EndLostJourneysResult:
        """Idempotent: most workflows it lists were ended here or by someone earlier, and only
        those still open are described and ended (their status checked again, as a reset in
        the Temporal UI may have started them anew)."""
        ended, workflow_ids = 0, []
        async for execution in self._temporal.list_workflows(GONE, page_size=PAGE):
            workflow_ids.append(execution.id)
            if len(workflow_ids) == PAGE:
                ended += await self._end(workflow_ids)
                workflow_ids = []
                activity.heartbeat(ended)
        ended += await self._end(workflow_ids)
        return EndLostJourneysResult(ended=ended, profiles_restarted=await self._restart_profiles(),
                                     endpoints_woken=await self._wake_overdue())

    async def _restart_profiles(self) -> int:
        """Starts again, from the database, the KYC profiles whose workflow is gone (not those
        whose contact was deleted, which took its profile along). Returns how many."""
        gone = {execution.id async for execution in self._temporal.list_workflows(
            PROFILES_GONE, page_size=PAGE)}
        async with self._sessions() as session:
            found = (await session.execute(select(KycProfile, Contact).join(
                Contact, Contact.id == KycProfile.contact_id).where(
                crud.among(session, KycProfile.workflow_id, sorted(gone)))
                .order_by(KycProfile.workflow_id))).all()
        restarted = 0
        for profile, contact in found:
            # Closed runs stay listed: most were started again since.
            if await how_lost(self._temporal, profile.workflow_id) is None:
                continue
            await start_again(self._temporal, self._settings, contact, profile)
            restarted += 1
            activity.heartbeat(restarted)
        return restarted

    async def _wake_overdue(self) -> int:
        """Wakes the enabled endpoints with a delivery past its time: their workflow was
        terminated in the Temporal UI (or failed) and is started again (signal-with-start); a
        running one merely makes one more pass. Returns how many it woke."""
        async with self._sessions() as session:
            overdue = (await session.execute(
                select(WebhookEndpoint.client_id, WebhookEndpoint.id).where(
                    WebhookEndpoint.enabled, exists().where(
                        WebhookDelivery.endpoint_id == WebhookEndpoint.id,
                        WebhookDelivery.status == DeliveryStatus.pending,
                        WebhookDelivery.next_attempt_at <= utcnow())))).all()
        by_client = defaultdict(list)
        for client_id, endpoint_id in overdue:
            by_client[client_id].append(str(endpoint_id))
        for client_id, endpoint_ids in by_client.items():
            await self._waker.wake(client_id, endpoint_ids, "deliveries overdue")
        return len(overdue)

    async def _end(self, workflow_ids: list[str]) -> int:
        if not workflow_ids:
            return 0
        async with transaction(self._sessions) as session:
            still_open = list(await session.scalars(select(Journey.id).where(
                crud.among(session, Journey.workflow_id, workflow_ids), OPEN_JOURNEY)))
            return len(await lost_journeys.end_lost_among(session, self._temporal, self._waker,
                                                            still_open))
