"""Reports of a campaign: its funnel, and its collected and verified contacts as CSV or JSON,
streamed so a campaign of any size is read in constant memory."""

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Iterator

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.deps import ClientDep, Reads, ReadsDep, SessionDep, StateDep
from api.errors import ERROR_RESPONSES
from api.routes.campaigns import campaign_of
from api.schemas import FunnelCounts, FunnelOut, FunnelRow
from core.csv_cells import safe_row
from db import reports
from core.vocabulary import AuditAction
from db.launches import plan_channels
from db.models import Campaign, utcnow

router = APIRouter(prefix="/v1/campaigns", tags=["reports"], responses=ERROR_RESPONSES)
# For Excel, which reads a CSV without it as the Windows code page (Zoë as ZoÃ«); off by
# default, as programs reading the CSV would take it for part of the first column's name.
BOM = "\ufeff"
BOM_QUERY = Query(False, description="Start the CSV with a UTF-8 byte order mark, so that "
                  "Excel opens it with its accents")


def csv_buffer(bom: bool) -> io.StringIO:
    """Where a CSV is written, started with the byte order mark if asked (for Excel)."""
    buffer = io.StringIO(BOM if bom else "")
    buffer.seek(0, io.SEEK_END)
    return buffer


# report.json as documented in the OpenAPI schema (the route streams it, so it is not
# validated on the way out; tests/test_reports.py reads a real one with it).
class ReportConsent(BaseModel):
    key: str | None = Field(description="The campaign's consent checkbox")
    purpose: str
    channel: str
    granted: bool
    given_at: datetime
    source: str
    legal_text_language: str | None
    legal_text_version: str | None
    legal_text_sha256: str | None


class ReportRow(BaseModel):
    journey_id: uuid.UUID
    contact_id: uuid.UUID
    external_id: str | None
    first_name: str | None
    last_name: str | None
    language: str
    stage: str
    enrolled_at: datetime = Field(description="When this journey (round) began: a contact "
                                  "enrolled again has a row per round")
    email: str | None
    email_state: str | None = Field(description="verified, pending or unverified")
    mobile: str | None
    mobile_state: str | None = Field(description="verified, pending or unverified")
    address: dict[str, Any] | None = Field(description="The address entered: type, line1, "
                                           "line2, postal_code, city, region, country")
    submitted_at: datetime | None
    verified_at: datetime | None
    ip: str | None
    user_agent: str | None
    reference: str | None = Field(default=None, description="Payment-reminder campaigns only "
                                  "(as the fields up to withdrawn_at): the claim's")
    currency: str | None = Field(default=None, description="The claim's as it stands (its "
                                 "newest round's, as claim_amount and due_on)")
    paid: bool | None = None
    paid_at: datetime | None = None
    amount: str | None = Field(default=None, description="As payment-completed recorded it")
    claim_amount: str | None = Field(default=None, description="What the claim asks, as it "
                                     "stands: a contact enrolled with it again may owe another "
                                     "amount, by another day, and every round's row says so")
    due_on: date | None = None
    withdrawn: bool | None = Field(default=None, description="The client withdrew the claim "
                                   "(claim-withdrawn); enrolled with it again, the contact "
                                   "owes it anew and this is false")
    withdrawn_at: datetime | None = None
    consents: list[ReportConsent] = Field(description="The consents of the submission that "
                                          "collected the data")


class ReportCampaign(BaseModel):
    id: uuid.UUID
    name: str
    generated_at: datetime


class ReportDocument(BaseModel):
    campaign: ReportCampaign
    rows: list[ReportRow] = Field(description="One per journey that entered data (in a "
                                  "payment-reminder campaign, one per journey)")


def first_channel(campaign: Campaign) -> str:
    return plan_channels(campaign.spec)[0]


def funnel_out(campaign: Campaign, funnel: reports.Funnel) -> FunnelOut:
    hidden = reports.hidden_steps(campaign.spec)

    def shown(steps: dict[str, int]) -> dict[str, int]:
        return {step: n for step, n in steps.items() if step not in hidden}

    return FunnelOut(
        campaign_id=campaign.id, journeys=funnel.journeys, running=funnel.running,
        finished=funnel.finished, total=FunnelCounts(**shown(funnel.steps)),
        by_channel={channel: FunnelCounts(**shown(steps))
                    for channel, steps in funnel.by_channel.items()},
        by_channel_language=[FunnelRow(channel=channel, language=language, **shown(steps))
                             for (channel, language), steps
                             in sorted(funnel.by_channel_language.items())])


async def _funnel(session: SessionDep, client_id: uuid.UUID, campaign_id: uuid.UUID
                  ) -> tuple[Campaign, FunnelOut]:
    campaign = await campaign_of(session, client_id, campaign_id)
    funnels = await reports.funnels(session, client_id=client_id,
                                    campaigns={campaign.id: first_channel(campaign)})
    return campaign, funnel_out(campaign, funnels[campaign.id])


# `paid` and `accepted`/`rejected` are left out where they do not apply, as before they were
# counted.
@router.get("/{campaign_id}/funnel", response_model=FunnelOut, response_model_exclude_none=True)
async def campaign_funnel(campaign_id: uuid.UUID, client: ClientDep,
                          session: SessionDep) -> FunnelOut:
    """Invited, opened, entered, verified (confirmed), expired, opted out, bounced (hard,
    soft, complaint), in a payment-reminder campaign paid, and in a re-consent campaign the
    answers accepted and rejected: in total, by channel, and by channel and language."""
    return (await _funnel(session, client.id, campaign_id))[1]


def funnel_columns(campaign: Campaign) -> list[str]:
    return ["channel", "language", *reports.shown_steps(campaign.spec), *reports.BOUNCE_STEPS]


@router.get("/{campaign_id}/funnel.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
async def funnel_csv(campaign_id: uuid.UUID, client: ClientDep, session: SessionDep,
                     bom: bool = BOM_QUERY) -> StreamingResponse:
    """The funnel by channel and language, one row each, and a last row `*,*` in total."""
    campaign, funnel = await _funnel(session, client.id, campaign_id)
    columns = funnel_columns(campaign)
    buffer = csv_buffer(bom)
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(row.model_dump(include=set(columns)) for row in funnel.by_channel_language)
    writer.writerow({"channel": "*", "language": "*",
                     **funnel.total.model_dump(include=set(columns))})
    return _download(campaign_id, iter([buffer.getvalue()]), "text/csv; charset=utf-8",
                     "funnel.csv")


BOUNCE_COLUMNS = ["at", "journey_id", "external_id", "language", "step", "channel",
                  "recipient", "kind", "reason", "source"]


@router.get("/{campaign_id}/bounces.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
async def bounces_csv(campaign_id: uuid.UUID, client: ClientDep, session: SessionDep,
                      state: StateDep, reads: ReadsDep,
                      bom: bool = BOM_QUERY) -> StreamingResponse:
    """Every bounce of the campaign with the provider's reason, oldest first; streamed."""
    campaign = await campaign_of(session, client.id, campaign_id)

    async def body() -> AsyncIterator[str]:
        buffer = csv_buffer(bom)
        writer = csv.DictWriter(buffer, fieldnames=BOUNCE_COLUMNS)
        writer.writeheader()
        async with state.sessions() as own:
            async for rows in reports.bounce_rows(own, client_id=campaign.client_id,
                                                  campaign_id=campaign.id):
                await reads.of_journeys((uuid.UUID(r["journey_id"]) for r in rows),
                                        action=AuditAction.export, streamed=True)
                writer.writerows(safe_row(r) for r in rows)
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return _download(campaign.id, body(), "text/csv; charset=utf-8", "bounces.csv")


def _download(campaign_id: uuid.UUID, body: Iterator[str] | AsyncIterator[str],
              media_type: str, suffix: str) -> StreamingResponse:
    name = f"campaign-{campaign_id}-{utcnow():%Y%m%dT%H%M%SZ}.{suffix}"
    return StreamingResponse(body, media_type=media_type,
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def _partitions(state: StateDep, campaign: Campaign, reads: Reads
                      ) -> AsyncIterator[list[dict]]:
    # Its own session: the request's closes before a streamed body is sent.
    async with state.sessions() as session:
        async for rows in reports.collected_rows(
                session, client_id=campaign.client_id, campaign_id=campaign.id,
                payments=bool(campaign.spec.get("payments"))):
            await reads.of((uuid.UUID(r["contact_id"]) for r in rows),
                           action=AuditAction.export, streamed=True)
            yield rows


@router.get("/{campaign_id}/report.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
async def report_csv(campaign_id: uuid.UUID, client: ClientDep, session: SessionDep,
                     state: StateDep, reads: ReadsDep,
                     bom: bool = BOM_QUERY) -> StreamingResponse:
    """One row per journey that entered data (a contact enrolled again has a row per round,
    each with its `journey_id` and `enrolled_at`): the data, its verification, and per consent
    checkbox granted/declined with the version and hash of the legal text shown. A
    payment-reminder campaign has a row per journey, answered or not, with what its claim
    asks, whether and when it was paid (and the amount recorded) or withdrawn."""
    campaign = await campaign_of(session, client.id, campaign_id)
    columns = reports.report_columns(await reports.consent_keys(
        session, client_id=client.id, campaign_id=campaign.id,
        current=[c["key"] for c in campaign.spec.get("consents", [])]),
        payments=bool(campaign.spec.get("payments")))

    async def body() -> AsyncIterator[str]:
        buffer = csv_buffer(bom)
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        async for rows in _partitions(state, campaign, reads):
            writer.writerows(safe_row(reports.flat(r)) for r in rows)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    return _download(campaign.id, body(), "text/csv; charset=utf-8", "csv")


@router.get("/{campaign_id}/report.json", response_class=StreamingResponse,
            responses={200: {"model": ReportDocument,
                             "content": {"application/json": {}}}})
async def report_json(campaign_id: uuid.UUID, client: ClientDep, session: SessionDep,
                      state: StateDep, reads: ReadsDep) -> StreamingResponse:
    """The same rows as the CSV with the consents as a list: {"campaign": ..., "rows": [...]}."""
    campaign = await campaign_of(session, client.id, campaign_id)
    head = json.dumps({"id": str(campaign.id), "name": campaign.name,
                       "generated_at": utcnow().isoformat()})

    async def body() -> AsyncIterator[str]:
        yield f'{{"campaign":{head},"rows":['
        separator = ""
        async for rows in _partitions(state, campaign, reads):
            chunk = ",".join(json.dumps(r, separators=(",", ":")) for r in rows)
            yield separator + chunk
            separator = ","
        yield "]}"

    return _download(campaign.id, body(), "application/json", "json")
