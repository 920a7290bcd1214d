"""A client's own settings, e.g. its household rule for contact points."""

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import ClientDep, SessionDep
from api.errors import ERROR_RESPONSES
from api.schemas import Strict
from core.vocabulary import GdprConsequence, HouseholdRule

router = APIRouter(prefix="/v1/settings", tags=["settings"], responses=ERROR_RESPONSES)


class ClientSettings(BaseModel):
    name: str
    default_language: str
    household_rule: HouseholdRule
    gdpr_consequence: GdprConsequence


class ClientSettingsUpdate(Strict):
    household_rule: HouseholdRule | None = None
    gdpr_consequence: GdprConsequence | None = None


def settings_out(client) -> ClientSettings:
    return ClientSettings(name=client.name, default_language=client.default_language,
                          household_rule=client.household_rule,
                          gdpr_consequence=client.gdpr_consequence)


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
    `full_functionality`, or `no_functionality` (only mandatory messages reach them)."""
    if body.household_rule is not None:
        client.household_rule = body.household_rule
    if body.gdpr_consequence is not None:
        client.gdpr_consequence = body.gdpr_consequence
    session.add(client)
    await session.commit()
    return settings_out(client)
