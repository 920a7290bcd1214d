"""A client's own settings, e.g. its household rule for contact points."""

from fastapi import APIRouter
from pydantic import BaseModel, Field, field_validator

from api.deps import ClientDep, SessionDep
from api.errors import ERROR_RESPONSES
from api.schemas import Strict, never_null
from core.vocabulary import GdprConsequence, HouseholdRule

router = APIRouter(prefix="/v1/settings", tags=["settings"], responses=ERROR_RESPONSES)


class ClientSettings(BaseModel):
    name: str
    default_language: str
    household_rule: HouseholdRule
    gdpr_consequence: GdprConsequence
    unverified_retention_days: int


class ClientSettingsUpdate(Strict):
    household_rule: HouseholdRule | None = None
    gdpr_consequence: GdprConsequence | None = None
    unverified_retention_days: int | None = Field(default=None, ge=1, le=3650)

    _not_cleared = field_validator("household_rule", "gdpr_consequence",
                                   "unverified_retention_days")(never_null)


def settings_out(client) -> ClientSettings:
    return ClientSettings(name=client.name, default_language=client.default_language,
                          household_rule=client.household_rule,
                          gdpr_consequence=client.gdpr_consequence,
                          unverified_retention_days=client.unverified_retention_days)


@router.get("", response_model=ClientSettings)
async def read_settings(client: ClientDep) -> ClientSettings:
    return settings_out(client)


@router.patch("", response_model=ClientSettings)
async def update_settings(body: ClientSettingsUpdate, client: ClientDep,
                          session: SessionDep) -> ClientSettings:
    """`household_rule`: when a second person confirms an email another person of yours has
    verified, `reject` refuses it (the first keeps it) or `move` gives it to the second person
    (the first person's email opt-ins lapse, recorded in their consent ledger).

    `gdpr_consequence`: for contacts who rejected or withdrew consent to keep their data:
    `full_functionality`, or `no_functionality` (only mandatory messages reach them).

    `unverified_retention_days`: data entered on a journey but never verified is deleted
    this many days after the journey ended (a daily schedule); an open journey keeps it."""
    if body.household_rule is not None:
        client.household_rule = body.household_rule
    if body.gdpr_consequence is not None:
        client.gdpr_consequence = body.gdpr_consequence
    if body.unverified_retention_days is not None:
        client.unverified_retention_days = body.unverified_retention_days
    session.add(client)
    await session.commit()
    return settings_out(client)
