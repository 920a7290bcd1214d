"""The "complete your data" link a client prints on any other message (letter, invoice, ...)."""

import subprocess
import uuid

import pytest

from db.models import Campaign
from db.session import transaction
from tests.helpers import Customer, on_the_page, unique_email
from tests.histories import save_history
from tests.test_channel_plans import ADDRESS, contact, letters_to
from tests.test_reconsent import reconsent_campaign
from workflows.held_journeys import wake_held_workflow_id
from workflows.journey import JourneyWorkflow


async def test_link_opens_the_running_journey_and_can_start_one(tenant, other_tenant, http,
                                                               mailbox, tmp_path):
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    address = unique_email()
    enrolled = (await tenant.enrol(campaign["id"], {"external_id": "e1", "email": address})
                )["results"][0]
    response = await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/enrichment-link")
    assert response.status_code == 200
    link = response.json()
    assert link["journey_id"] == enrolled["journey_id"]
    path = link["url"].removeprefix("http://testserver")
    customer = Customer(http)
    await customer.open(path)
    assert address in customer.page  # the same running journey, pre-filled
    # A campaign named along with a running journey must still be one of the client's.
    for unknown in ("00000000-0000-0000-0000-000000000000",
                    (await other_tenant.create_campaign(languages=["en"]))["id"]):
        assert (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/enrichment-link",
                                 campaign_id=unknown)).status_code == 404
    second = (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/enrichment-link")).json()
    assert second["url"] != link["url"]  # fresh each time; the first still works
    assert (await http.get(path)).status_code == 200

    # As a QR code, decodable to the link.
    png = await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/enrichment-link",
                           format="png")
    assert png.headers["content-type"] == "image/png"
    (tmp_path / "qr.png").write_bytes(png.content)
    decoded = subprocess.run(["zbarimg", "--raw", "-q", str(tmp_path / "qr.png")],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert decoded.startswith("http://testserver/c/")
    svg = await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/enrichment-link",
                           format="svg")
    assert svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content

    # After the journey ends, a link needs a campaign to start a new one.
    await customer.submit(path + "/opt-out")
    await tenant.wait_for_stage(enrolled["journey_id"], "opted_out")
    none = await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/enrichment-link")
    assert none.status_code == 404
    other = await tenant.create_campaign(languages=["en"], consents=[])
    started = await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/enrichment-link",
                               campaign_id=other["id"])
    assert started.status_code == 200 and started.json()["journey_id"] != link["journey_id"]
    # A campaign that cannot take the contact (here: it needs a claim per contact) says why.
    payments = await tenant.create_campaign(languages=["en"], payments=True)
    second_page = started.json()["url"].removeprefix("http://testserver")
    await customer.open(second_page)
    await customer.submit(second_page + "/opt-out")
    await tenant.wait_for_stage(started.json()["journey_id"], "opted_out")
    refused = await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/enrichment-link",
                               campaign_id=payments["id"])
    assert refused.status_code == 422
    assert [f["field"] for f in refused.json()["error"]["fields"]] == ["campaign_id"]

    # Another client can neither read the contact nor use its own campaign on it.
    assert (await other_tenant.get(
        f"/v1/contacts/{enrolled['contact_id']}/enrichment-link")).status_code == 404


async def test_the_link_names_the_journey_and_campaign_it_opens(tenant, http):
    first = await tenant.create_campaign(languages=["en"], consents=[])
    second = await tenant.create_campaign(languages=["en"], consents=[])
    enrolled = (await tenant.enrol(first["id"], {"external_id": "e2", "email": unique_email()})
                )["results"][0]
    contact_link = f"/v1/contacts/{enrolled['contact_id']}/enrichment-link"

    # Running in another campaign, the contact's journey is the one linked, and says so: no
    # second journey is started for the same data.
    elsewhere = await tenant.ok("GET", contact_link + f"?campaign_id={second['id']}")
    assert (elsewhere["journey_id"], elsewhere["campaign_id"]) == (enrolled["journey_id"],
                                                                   first["id"])
    assert (await tenant.ok("GET", f"/v1/campaigns/{second['id']}/journeys"))["items"] == []

    # With journeys in both, the one in the campaign named is linked, else the newest.
    newer = (await tenant.enrol(second["id"], {"external_id": "e2"}))["results"][0]
    named = await tenant.ok("GET", contact_link + f"?campaign_id={first['id']}")
    assert (named["journey_id"], named["campaign_id"]) == (enrolled["journey_id"], first["id"])
    newest = await tenant.ok("GET", contact_link)
    assert (newest["journey_id"], newest["campaign_id"]) == (newer["journey_id"], second["id"])


async def test_the_link_lasts_as_long_as_its_journey_whatever_the_campaign_says_now(
        tenant, http, mailbox):
    """A journey keeps the expiry it started with; the link took the campaign's as it is now,
    so after a change it was dead on arrival, or promised days the journey has not."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="P1D")
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign,
                                                 unique_email())
    contact_link = f"/v1/contacts/{enrolled['contact_id']}/enrichment-link"
    started_with = (await tenant.ok("GET", contact_link))["expires_at"]
    for expires_after in ("PT1S", "P60D"):
        await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}",
                        {"expires_after": expires_after})
        link = await tenant.ok("GET", contact_link)
        assert link["expires_at"] == started_with, expires_after
        assert (await http.get(link["url"].removeprefix("http://testserver"))).status_code == 200


@pytest.mark.parametrize("plan", [
    # The client's message stands for the plan's first message: no letter of the campaign's.
    [{"channel": "letter"}, {"channel": "email", "after": "PT2S", "max": 1}],
    # Without a plan, for the invitation: the reminder comes on the campaign's cadence.
    None,
], ids=["channel_plan", "reminders"])
async def test_a_journey_the_link_starts_sends_no_invitation_of_its_own(
        plan, tenant, mailbox, settings, temporal_env, record_histories):
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], expires_after="PT8S",
        **({"channel_plan": plan} if plan else {"reminders": {"interval": "PT2S",
                                                              "max_count": 1}}))
    email = unique_email("printed")
    eva = await contact(tenant, email=email, address=ADDRESS)
    link = await tenant.ok("GET", f"/v1/contacts/{eva['id']}/enrichment-link"
                                  f"?campaign_id={campaign['id']}")
    assert link["campaign_id"] == campaign["id"]
    assert (await tenant.journey(link["journey_id"]))["stage"] == "enrolled"

    # The client's message with the link is the invitation: the journey's first message is a
    # reminder of it, two seconds later.
    [reminder] = await mailbox.wait_for(email)
    assert reminder.subject.startswith("Reminder"), reminder.subject
    journey = await tenant.wait_for_stage(link["journey_id"], "invited")
    assert [(e["type"], e["detail"]) for e in journey["history"]] == [
        ("reminder_sent", {"channel": "email"})]

    handle = temporal_env.client.get_workflow_handle_for(JourneyWorkflow.run,
                                                         journey["workflow_id"])
    assert (await handle.result()).stage == "expired"
    assert letters_to(settings, eva["last_name"]) == [] and len(mailbox.to(email)) == 1
    if record_histories:
        name = "channel_plan" if plan else "reminders"
        await save_history(handle, f"enrichment_link_invited_by_client_{name}")


async def test_the_link_never_opens_a_reconsent_journey(tenant):
    """A re-consent journey asks for a consent, not for data: the link to complete the
    contact's data neither opens it nor starts one."""
    reconsent = await reconsent_campaign(tenant)
    data = await tenant.create_campaign(languages=["en"], consents=[])
    email = unique_email("rc")
    [collecting] = (await tenant.enrol(data["id"], {"external_id": email, "email": email})
                    )["results"]
    [asked] = (await tenant.enrol(reconsent["id"], {"external_id": email}))["results"]
    assert asked["journey_id"] not in (None, collecting["journey_id"]), asked
    contact_link = f"/v1/contacts/{asked['contact_id']}/enrichment-link"
    # The newest running journey is the re-consent one: the link opens the data one.
    assert (await tenant.ok("GET", contact_link))["journey_id"] == collecting["journey_id"]
    refused = await tenant.get(contact_link, campaign_id=reconsent["id"])
    assert refused.status_code == 422
    assert [f["field"] for f in refused.json()["error"]["fields"]] == ["campaign_id"]

    # With only a re-consent journey running, there is none to open.
    other = unique_email("rc-only")
    [only] = (await tenant.enrol(reconsent["id"], {"external_id": other, "email": other})
              )["results"]
    assert (await tenant.get(f"/v1/contacts/{only['contact_id']}/enrichment-link")
            ).status_code == 404


async def verified_on_the_page(tenant, http, mailbox, campaign: dict, email: str,
                               **address: str) -> dict:
    """The contact enrolled in the campaign enters the email (and address) and confirms it."""
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, email)
    await customer.submit(page, email=email, **address)
    [_, verification] = await mailbox.wait_for(email, count=2)
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    return enrolled


async def test_an_address_the_customer_confirmed_leaves_nothing_to_complete(
        tenant, http, mailbox):
    """A campaign that collects addresses asks for one the customer has not confirmed: a
    contact who entered theirs in a verified journey has nothing to complete there, one whose
    address only the client gave still gets a journey."""
    collects = {"languages": ["en"], "consents": [], "collect": ["email", "address"]}
    entered = await verified_on_the_page(
        tenant, http, mailbox, await tenant.create_campaign(**collects),
        unique_email("address-entered"), address_line1="Nieuweweg 2",
        address_postal_code="2801 AA", address_city="Gouda", address_country="nl")
    [address] = (await tenant.ok("GET", f"/v1/contacts/{entered['contact_id']}"))["addresses"]
    assert address["confirmed_at"] is not None
    given = await verified_on_the_page(
        tenant, http, mailbox, await tenant.create_campaign(languages=["en"], consents=[]),
        unique_email("address-given"))
    await tenant.ok("POST", f"/v1/contacts/{given['contact_id']}/addresses",
                    {**ADDRESS, "type": "home"}, status=201)

    later = await tenant.create_campaign(**collects)
    refused = await tenant.get(f"/v1/contacts/{entered['contact_id']}/enrichment-link",
                               campaign_id=later["id"])
    assert refused.status_code == 409, refused.text
    assert "nothing to complete" in refused.json()["error"]["message"]
    started = await tenant.get(f"/v1/contacts/{given['contact_id']}/enrichment-link",
                               campaign_id=later["id"])
    assert started.status_code == 200 and started.json()["campaign_id"] == later["id"], started.text


async def test_no_journey_is_started_for_a_contact_with_nothing_to_complete(
        tenant, http, mailbox):
    """The contact has verified the email the campaign collects: a journey there would ask
    for nothing and only remind him. The client is told so instead of getting a link."""
    first = await tenant.create_campaign(languages=["en"], consents=[])
    enrolled = await verified_on_the_page(tenant, http, mailbox, first, unique_email("complete"))

    later = await tenant.create_campaign(languages=["en"], consents=[])
    refused = await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/enrichment-link",
                               campaign_id=later["id"])
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "conflict"
    assert "nothing to complete" in refused.json()["error"]["message"]
    assert (await tenant.ok("GET", f"/v1/campaigns/{later['id']}/journeys"))["items"] == []
    # A campaign that also collects what he has not verified (a mobile) still starts one.
    more = await tenant.create_campaign(languages=["en"], consents=[],
                                        collect=["email", "mobile"])
    started = await tenant.ok("GET", f"/v1/contacts/{enrolled['contact_id']}/enrichment-link"
                                     f"?campaign_id={more['id']}")
    assert started["campaign_id"] == more["id"]


async def test_a_campaign_stored_with_an_expiry_past_the_clock_gives_a_link(tenant, sessions,
                                                                            http):
    """Stored before durations were bounded: the link's expiry was a 500."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    async with transaction(sessions) as session:
        stored = await session.get(Campaign, uuid.UUID(campaign["id"]))
        stored.spec = {**stored.spec, "expires_after": "P99999999D"}
    eva = await contact(tenant, email=unique_email())
    response = await tenant.get(f"/v1/contacts/{eva['id']}/enrichment-link",
                                campaign_id=campaign["id"])
    assert response.status_code == 200, response.text
    journey = await tenant.wait_for_stage(response.json()["journey_id"], "cancelled")
    assert journey["history"][-1]["detail"]["by"] == "system"
    page = await Customer(http).open(response.json()["url"].removeprefix("http://testserver"))
    assert "can no longer be completed" in page.text, page.text


async def test_archiving_leaves_open_a_journey_whose_link_the_client_gave_out(
        tenant, http, temporal_env):
    """The client's letter with the link reached the customer: archiving the campaign ends
    only the journeys that reached nobody, so the customer scanning it can still answer."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="P3D")
    eva = await contact(tenant, email=unique_email("archived"))
    link = await tenant.ok("GET", f"/v1/contacts/{eva['id']}/enrichment-link"
                                  f"?campaign_id={campaign['id']}")
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"status": "archived"})
    await temporal_env.client.get_workflow_handle(
        wake_held_workflow_id(campaign["id"])).result()

    assert (await tenant.journey(link["journey_id"]))["stage"] == "enrolled"
    page = await Customer(http).open(link["url"])
    assert page.status_code == 200 and "withdrawn" not in page.text, page.text
