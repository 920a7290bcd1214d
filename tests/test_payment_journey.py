"""Payment-reminder campaigns (the Mail to Pay seed): each contact comes with a claim; the
customer may pay before or after leaving data; the client reports the payment, which is
announced once and stops the reminders."""

import asyncio
import csv
import io
import re
from datetime import UTC, datetime, timedelta, timezone

from tests.helpers import Customer, PrintedLetter, eventually, own_api, unique_email
from tests.test_channel_plans import ADDRESS, contact, mobile_number, wait_for_letter, wait_for_sms

PAY = "https://pay.example.com/claims/"


def claim(n: int, **extra) -> dict:
    return {"reference": f"INV-{n}", "payment_url": f"{PAY}{n}", "amount": "125.50",
            "due_on": "2099-12-31", **extra}


async def paid(tenant, journey_id: str, status: int = 200, **body):
    response = await tenant.post(f"/v1/journeys/{journey_id}/payment-completed", body)
    assert response.status_code == status, response.text
    return response.json()


async def verification_to(mailbox, address: str):
    """Reminders for the claim may arrive around it, so the verification email is found by its link."""
    async def probe():
        return next((m for m in mailbox.to(address) if "/v/" in mailbox.link(m)), None)
    return await eventually(probe, what=f"the verification email to {address}")


async def test_bad_claims_are_refused_by_item(tenant, mailbox):
    payments = await tenant.create_campaign(payments=True)
    plain = await tenant.create_campaign()
    response = await tenant.post(f"/v1/campaigns/{payments['id']}/contacts", {"contacts": [
        {"external_id": "no-claim", "email": unique_email()},
        {"external_id": "http", "email": unique_email(), "claim": claim(1, payment_url="http://x.example.com/")},
        {"external_id": "negative", "email": unique_email(), "claim": claim(2, amount="-1")},
        {"external_id": "good", "email": unique_email(), "claim": claim(3)},
        {"external_id": "no-money", "email": unique_email(), "claim": claim(5, currency="XYZ")},
        # In the subject of every message, where a line break would start the text with a
        # line of its own.
        {"external_id": "forged", "email": unique_email(),
         "claim": claim(6, reference="INV-6\r\nBcc: evil@example.com")},
    ]})
    assert response.status_code == 202, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["rejected", "rejected", "rejected", "accepted",
                                              "rejected", "rejected"]
    assert [r["errors"][0]["field"] for r in results[:3] + results[4:]] == [
        "claim", "claim.payment_url", "claim.amount", "claim.currency", "claim.reference"]
    refused = await tenant.post(f"/v1/campaigns/{plain['id']}/contacts", {"contacts": [
        {"external_id": "stray", "email": unique_email(), "claim": claim(4)}]})
    assert refused.status_code == 422
    assert refused.json()["results"][0]["errors"][0]["message"] == \
        "this campaign carries no payments"
    # The same claim again is a repeat; another one, while the journey lives, would be lost.
    for n, status in ((3, "already_enrolled"), (9, "rejected")):
        again = (await tenant.post(f"/v1/campaigns/{payments['id']}/contacts", {"contacts": [
            {"external_id": "good", "claim": claim(n)}]})).json()["results"][0]
        assert again["status"] == status, again
    assert again["errors"][0]["field"] == "claim.reference" and "INV-3" in \
        again["errors"][0]["message"]
    journey = await tenant.journey(results[3]["journey_id"])
    assert journey["claim"]["reference"] == "INV-3"
    # Claims come per contact: such a campaign is neither launched on the registry nor recurs.
    assert (await tenant.post(f"/v1/campaigns/{payments['id']}/launch", {})).status_code == 409
    recurring = await tenant.post("/v1/campaigns", {
        "name": "Monthly dunning", "payments": True, "recurrence": {"every": "P30D"}})
    assert recurring.status_code == 422
    assert recurring.json()["error"]["fields"][0]["field"] == "recurrence"


async def test_pay_before_or_after_leaving_data(
    tenant, other_tenant, http, mailbox, webhook_receiver
):
    hook = await tenant.subscribe(webhook_receiver, ["journey.payment_completed"])
    campaign = await tenant.create_campaign(
        payments=True, reminders={"interval": "PT2S", "max_count": 3}, expires_after="PT14S")
    people = {name: unique_email(name) for name in ("first", "later", "never", "paid_only")}
    enrolled = await tenant.enrol(campaign["id"], *(
        {"external_id": name, "email": email, "claim": claim(i)}
        for i, (name, email) in enumerate(people.items())))
    journeys = {r["external_id"]: r["journey_id"] for r in enrolled["results"]}

    # The invitation names the claim; the page offers to pay.
    invitation = (await mailbox.wait_for(people["first"]))[0]
    assert "Open payment: INV-0, €125.50" in invitation.text
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    assert f'href="{PAY}0"' in customer.page and "December 31, 2099" in customer.page

    # "paid_only" pays and never leaves data: the reminders stop all the same.
    await mailbox.wait_for(people["paid_only"])
    paid_only_at = datetime.fromisoformat((await paid(tenant, journeys["paid_only"]))["paid_at"])

    # "later" leaves the data first (while its reminders may already be arriving); the journey
    # ends verified, the payment still counts.
    later_invitation = (await mailbox.wait_for(people["later"]))[0]
    later = Customer(http)
    await later.open(mailbox.link(later_invitation))
    await later.submit(mailbox.link(later_invitation), email=people["later"], consent=["terms"])
    verification = await verification_to(mailbox, people["later"])
    await later.open(mailbox.link(verification))
    await later.submit(mailbox.link(verification))
    await tenant.wait_for_stage(journeys["later"], "verified")
    assert "Thank you, your address is confirmed" in later.page
    assert "Open payment" not in later.page
    assert (await paid(tenant, journeys["later"]))["paid_at"]

    # "first" pays straight away (the client's payment system reports it) ...
    assert (await other_tenant.post(f"/v1/journeys/{journeys['first']}/payment-completed",
                                    {})).status_code == 404
    wrong = await tenant.post(f"/v1/journeys/{journeys['first']}/payment-completed",
                              {"reference": "INV-9"})
    assert wrong.status_code == 422 and wrong.json()["error"]["fields"][0]["field"] == "reference"
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await tenant.post(f"/v1/journeys/{journeys['first']}/payment-completed",
                              {"paid_at": future})).status_code == 422
    journey = await paid(tenant, journeys["first"], reference="INV-0")
    assert journey["paid_at"] and journey["claim"]["reference"] == "INV-0"
    # Repeated, even without a body (every field has its default): nothing changes.
    again = await tenant.http.post(f"/v1/journeys/{journeys['first']}/payment-completed",
                                   headers=tenant.auth)
    assert again.status_code == 200 and again.json()["paid_at"] == journey["paid_at"]
    # ... and leaves the data afterwards: the page thanks for the payment, the journey goes on.
    page = mailbox.link(invitation)
    await customer.open(page)
    assert "Payment received" in customer.page and PAY not in customer.page
    await customer.submit(page, email=people["first"], consent=["terms"])
    verification = await verification_to(mailbox, people["first"])
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    await tenant.wait_for_stage(journeys["first"], "verified")


    # "never" gets every reminder, with the claim; a paid journey gets none after paying.
    await tenant.wait_for_stage(journeys["never"], "expired", timeout=30)
    await tenant.wait_for_stage(journeys["paid_only"], "expired", timeout=30)
    reminders = [m for m in mailbox.to(people["never"]) if "Reminder" in m.subject]
    assert len(reminders) == 3 and all("INV-2" in m.text for m in reminders)
    assert not [m for m in mailbox.to(people["paid_only"]) if "Reminder" in m.subject
                and m.date > paid_only_at + timedelta(seconds=1)]

    deliveries = await webhook_receiver.wait_for(hook, "journey.payment_completed", count=3)
    assert sorted(d.payload["data"]["reference"] for d in deliveries) == [
        "INV-0", "INV-1", "INV-3"]
    assert len(webhook_receiver.events(hook, "journey.payment_completed")) == 3
    history = [e["type"] for e in (await tenant.journey(journeys["first"]))["history"]]
    assert history.count("payment_completed") == 1

    plain = await tenant.create_campaign()
    unpaid = await tenant.enrol(plain["id"], {"external_id": "plain", "email": unique_email()})
    await paid(tenant, unpaid["results"][0]["journey_id"], status=409)


async def test_after_opting_out_the_page_offers_to_pay_but_not_to_check_details(
    tenant, http, mailbox
):
    campaign = await tenant.create_campaign(payments=True, languages=["en"])
    email = unique_email("opts-out")
    enrolled = await tenant.enrol(campaign["id"], {"external_id": email, "email": email,
                                                   "claim": claim(7)})
    [invitation] = await mailbox.wait_for(email)
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    assert "You can pay before or after checking your details." in customer.page

    await customer.submit(page + "/opt-out")
    await tenant.wait_for_stage(enrolled["results"][0]["journey_id"], "opted_out")
    await customer.open(page)
    assert "You will not be asked again" in customer.page
    # Paying is still offered: the claim is open whatever the customer thinks of the request.
    assert "Pay now" in customer.page and f"{PAY}7" in customer.page
    assert "checking your details" not in customer.page
    # "Not asked again" is about the details: the page says the payment is still due.
    assert "The open payment below is still due." in customer.page

    # The client writes the claim off: the page no longer asks for what is not owed.
    withdrawn = await tenant.post(
        f"/v1/journeys/{enrolled['results'][0]['journey_id']}/claim-withdrawn", {})
    assert withdrawn.status_code == 200, withdrawn.text
    await customer.open(page)
    assert "You will not be asked again" in customer.page
    assert "Pay now" not in customer.page and f"{PAY}7" not in customer.page
    assert "still due" not in customer.page


async def test_a_verification_link_shows_no_claim_at_any_step(tenant, http, mailbox):
    """The verification link goes to the address the customer typed: after a typo, a
    stranger's mailbox, which must learn nothing of the claim, not even once it confirmed."""
    campaign = await tenant.create_campaign(payments=True, languages=["en", "nl"])
    email, typo = unique_email("debtor"), unique_email("stranger")
    await tenant.enrol(campaign["id"], {"external_id": email, "email": email,
                                        "claim": claim(8)})
    [invitation] = await mailbox.wait_for(email)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), email=typo, consent=["terms"])
    link = mailbox.link(await verification_to(mailbox, typo))
    stranger = Customer(http)
    pages = [(await stranger.open(link), stranger.page)]
    pages.append((await stranger.submit(link), stranger.page))
    pages.append((await stranger.open(link), stranger.page))
    pages.append((await stranger.submit(link + "/language", language="nl"), stranger.page))
    assert "Thank you, your address is confirmed" in pages[1][1]
    for response, page in pages:
        assert response.status_code == 200, page
        # The amount in any language's notation (the page's random CSRF token may hold "125").
        assert "INV-8" not in page and PAY not in page and not re.search(r"125[.,]5", page), page


async def test_a_payment_reported_again_with_another_amount_or_time_is_a_conflict(tenant):
    campaign = await tenant.create_campaign(payments=True)
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "payer", "email": unique_email(),
                                                   "claim": claim(1)})
    journey_id = enrolled["results"][0]["journey_id"]
    first = await paid(tenant, journey_id, amount="100.00")
    # The same report again, whole or without the amount, is a harmless repeat.
    for body in ({"amount": "100.00", "reference": "INV-1"}, {"amount": "100"}, {}):
        again = await paid(tenant, journey_id, **body)
        assert again["paid_at"] == first["paid_at"], body
    # Another amount is not taken in silently.
    conflict = await tenant.post(f"/v1/journeys/{journey_id}/payment-completed",
                                 {"amount": "125.50"})
    assert conflict.status_code == 409, conflict.text
    message = conflict.json()["error"]["message"]
    assert conflict.json()["error"]["code"] == "conflict"
    assert "100.00" in message and "125.50" in message and "INV-1" in message
    # So is another time of payment; the one recorded, given again, is a repeat.
    earlier = (datetime.fromisoformat(first["paid_at"]) - timedelta(days=1)).isoformat()
    moved = await tenant.post(f"/v1/journeys/{journey_id}/payment-completed",
                              {"paid_at": earlier, "amount": "100.00"})
    assert moved.status_code == 409, moved.text
    assert "paid_at" in moved.json()["error"]["message"]
    assert (await paid(tenant, journey_id, paid_at=first["paid_at"]))["paid_at"] == \
        first["paid_at"]
    # The reference is read as enrolment reads it: surrounding blanks do not count.
    assert (await paid(tenant, journey_id, reference=" INV-1 "))["paid_at"] == first["paid_at"]
    history = (await tenant.journey(journey_id))["history"]
    assert [e["detail"]["amount"] for e in history if e["type"] == "payment_completed"] == [
        "100.00"]
    # Recorded without an amount (the claim named none, nor did the report), one reported
    # later is news too: it answered 200 and was lost.
    unpriced = (await tenant.enrol(campaign["id"], {
        "external_id": "unpriced", "email": unique_email(), "claim": claim(2, amount=None)}
    ))["results"][0]["journey_id"]
    await paid(tenant, unpriced)
    assert (await tenant.post(f"/v1/journeys/{unpriced}/payment-completed",
                              {"amount": "99.99"})).status_code == 409


async def test_a_payment_time_is_answered_as_it_is_read_later(tenant):
    campaign = await tenant.create_campaign(payments=True)
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "abroad",
                                                   "email": unique_email(), "claim": claim(1)})
    journey_id = enrolled["results"][0]["journey_id"]
    sent = (datetime.now(UTC) - timedelta(hours=3)).astimezone(timezone(timedelta(hours=2)))
    answered = await paid(tenant, journey_id, paid_at=sent.isoformat())
    read = await tenant.journey(journey_id)
    assert answered["paid_at"] == read["paid_at"], (answered["paid_at"], read["paid_at"])
    assert datetime.fromisoformat(answered["paid_at"]) == sent
    assert datetime.fromisoformat(answered["paid_at"]).utcoffset() == timedelta(0)
    [event] = [e for e in read["history"] if e["type"] == "payment_completed"]
    assert event["detail"]["paid_at"] == datetime.fromisoformat(read["paid_at"]).isoformat()


async def test_report_and_funnel_say_who_paid(tenant, http, mailbox):
    """A debt collector reads in the report what every claim asks and whether it was paid or
    written off, whether or not its customer ever answered."""
    campaign = await tenant.create_campaign(payments=True)
    people = {name: unique_email(name) for name in ("payer", "entered", "idle", "written-off")}
    enrolled = await tenant.enrol(campaign["id"], *(
        {"external_id": name, "email": email, "claim": claim(i)}
        for i, (name, email) in enumerate(people.items())))
    journeys = {r["external_id"]: r["journey_id"] for r in enrolled["results"]}
    # The client gives up on "written-off": its request ends and the claim is withdrawn.
    await mailbox.wait_for(people["written-off"])
    await tenant.ok("POST", f"/v1/journeys/{journeys['written-off']}/cancel")
    await tenant.wait_for_stage(journeys["written-off"], "cancelled")
    await tenant.ok("POST", f"/v1/journeys/{journeys['written-off']}/claim-withdrawn")
    # "payer" pays without ever leaving data; "entered" leaves data and does not pay.
    await mailbox.wait_for(people["payer"])
    payment = await paid(tenant, journeys["payer"], amount="99.00")
    invitation = (await mailbox.wait_for(people["entered"]))[0]
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), email=people["entered"], consent=["terms"])
    await verification_to(mailbox, people["entered"])
    base = f"/v1/campaigns/{campaign['id']}"

    funnel = await tenant.ok("GET", f"{base}/funnel")
    assert funnel["total"]["paid"] == 1 and funnel["by_channel"]["email"]["paid"] == 1
    funnel_csv = list(csv.DictReader(io.StringIO((await tenant.get(f"{base}/funnel.csv")).text)))
    assert funnel_csv[-1]["channel"] == "*" and funnel_csv[-1]["paid"] == "1"

    report = list(csv.DictReader(io.StringIO((await tenant.get(f"{base}/report.csv")).text)))
    rows = {r["external_id"]: r for r in report}
    assert set(rows) == set(people)
    assert (rows["payer"]["paid"], rows["payer"]["amount"]) == ("true", "99.00")
    assert (rows["payer"]["reference"], rows["payer"]["currency"]) == ("INV-0", "EUR")
    assert datetime.fromisoformat(rows["payer"]["paid_at"]) == datetime.fromisoformat(
        payment["paid_at"]) and rows["payer"]["email"] == ""
    assert (rows["entered"]["paid"], rows["entered"]["paid_at"], rows["entered"]["amount"]) == (
        "false", "", "")
    assert rows["entered"]["reference"] == "INV-1"
    # What each claim asks, paid or not, answered or not; and which the client withdrew.
    for name, row in rows.items():
        assert (row["claim_amount"], row["due_on"]) == ("125.50", "2099-12-31"), name
        assert row["withdrawn"] == ("true" if name == "written-off" else "false"), name
    assert (rows["idle"]["reference"], rows["idle"]["paid"], rows["idle"]["email"]) == (
        "INV-2", "false", "")
    withdrawn_at = (await tenant.journey(journeys["written-off"]))["history"][-1]
    assert withdrawn_at["type"] == "claim_withdrawn"
    assert datetime.fromisoformat(rows["written-off"]["withdrawn_at"]) == datetime.fromisoformat(
        withdrawn_at["at"]) and rows["idle"]["withdrawn_at"] == ""
    entries = {r["external_id"]: r for r in (await tenant.get(f"{base}/report.json")).json()["rows"]}
    assert set(entries) == set(people)
    assert (entries["payer"]["paid"], entries["payer"]["amount"]) == (True, "99.00")
    assert entries["entered"]["paid"] is False and entries["entered"]["email"] == people["entered"]
    assert (entries["idle"]["claim_amount"], entries["idle"]["due_on"],
            entries["idle"]["withdrawn"]) == ("125.50", "2099-12-31", False)
    assert entries["written-off"]["withdrawn"] is True

    # A campaign without payments shows none of it.
    plain = await tenant.create_campaign()
    assert "paid" not in (await tenant.ok("GET", f"/v1/campaigns/{plain['id']}/funnel"))["total"]
    header = (await tenant.get(f"/v1/campaigns/{plain['id']}/report.csv")).text.splitlines()[0]
    assert not {"paid", "reference", "currency"} & set(header.split(","))


async def test_a_claim_reference_is_owed_by_one_contact_per_campaign(tenant):
    campaign = await tenant.create_campaign(payments=True)
    other = await tenant.create_campaign(payments=True)
    contacts = f"/v1/campaigns/{campaign['id']}/contacts"

    async def enrol(*items, path=contacts):
        response = await tenant.post(path, {"contacts": list(items)})
        assert response.status_code in (202, 422), response.text
        return response.json()["results"]

    def person(name: str, n: int) -> dict:
        return {"external_id": name, "email": unique_email(name), "claim": claim(n)}

    [first] = await enrol(person("debtor", 1))
    assert first["status"] == "accepted"
    # Another contact with the same invoice, in a later request or later in the same one.
    [taken] = await enrol(person("impostor", 1))
    assert taken["status"] == "rejected", taken
    assert taken["errors"][0]["field"] == "claim.reference"
    assert "INV-1" in taken["errors"][0]["message"]
    assert first["contact_id"] in taken["errors"][0]["message"]
    pair = await enrol(person("one", 2), person("two", 2))
    assert [r["status"] for r in pair] == ["accepted", "rejected"]
    assert pair[1]["errors"][0]["field"] == "claim.reference"
    # The same contact with its own claim again is a repeat; another campaign has its own INV-1.
    [again] = await enrol({"external_id": "debtor", "claim": claim(1)})
    assert again["status"] == "already_enrolled" and again["journey_id"] == first["journey_id"]
    [elsewhere] = await enrol(person("impostor", 1), path=f"/v1/campaigns/{other['id']}/contacts")
    assert elsewhere["status"] == "accepted"
    # Two requests at once with one invoice for two people: the database lets one through.
    raced = await asyncio.gather(enrol(person("left", 3)), enrol(person("right", 3)))
    assert sorted(r[0]["status"] for r in raced) == ["accepted", "rejected"]

    journeys = (await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}/journeys"))["items"]
    references = [j["claim"]["reference"] for j in journeys]
    assert sorted(references) == ["INV-1", "INV-2", "INV-3"]


async def test_an_item_refused_for_its_claim_leaves_no_new_contact(tenant):
    campaign = await tenant.create_campaign(payments=True)

    async def enrol(*items):
        response = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts",
                                     {"contacts": list(items)})
        assert response.status_code in (202, 422), response.text
        return {r["external_id"]: r for r in response.json()["results"]}

    async def in_registry(external_id: str) -> bool:
        return bool((await tenant.ok("GET", f"/v1/contacts?external_id={external_id}"))["items"])

    def person(name: str, n: int) -> dict:
        return {"external_id": name, "email": unique_email(name), "claim": claim(n)}

    first = (await enrol(person("debtor", 1)))["debtor"]
    # Refused for a claim another contact holds (since an earlier request, or an earlier item),
    # beside items that are taken in the same request.
    results = await enrol(person("impostor", 1), person("one", 2), person("two", 2),
                          person("bystander", 3),
                          {"external_id": "debtor", "claim": claim(1, amount="1.00")})
    assert {k: r["status"] for k, r in results.items()} == {
        "impostor": "rejected", "one": "accepted", "two": "rejected", "bystander": "accepted",
        "debtor": "rejected"}
    assert first["contact_id"] in results["impostor"]["errors"][0]["message"]
    assert results["one"]["contact_id"] in results["two"]["errors"][0]["message"]
    assert results["impostor"]["contact_id"] is None and results["two"]["contact_id"] is None
    assert results["debtor"]["contact_id"] == first["contact_id"]
    for name, kept in (("impostor", False), ("two", False), ("one", True), ("bystander", True),
                       ("debtor", True)):
        assert await in_registry(name) is kept, name
    assert (await tenant.ok("GET", f"/v1/contacts/{results['one']['contact_id']}"))[
        "external_id"] == "one"
    # A claim already paid is refused to a new contact too, which is not written either.
    await paid(tenant, first["journey_id"])
    refused = await enrol(person("late-payer", 1))
    assert refused["late-payer"]["status"] == "rejected"
    assert not await in_registry("late-payer")
    # Two requests at once with one invoice: the one refused writes no contact either.
    raced = await asyncio.gather(enrol(person("left", 4)), enrol(person("right", 4)))
    [loser] = [name for r in raced for name, v in r.items() if v["status"] == "rejected"]
    assert not await in_registry(loser)


async def test_a_paid_claim_is_not_asked_for_again(tenant, http, mailbox):
    campaign = await tenant.create_campaign(payments=True, expires_after="PT4S",
                                            reminders={"interval": "PT1H", "max_count": 1})
    email = unique_email("repays")
    item = {"external_id": "repays", "email": email, "claim": claim(5)}
    first = (await tenant.enrol(campaign["id"], item))["results"][0]
    [invitation] = await mailbox.wait_for(email)
    # Unpaid when its journey ends, the claim is asked for again in a new round ...
    await tenant.wait_for_stage(first["journey_id"], "expired", timeout=30)
    second = (await tenant.enrol(campaign["id"], item))["results"][0]
    assert second["status"] == "accepted" and second["journey_id"] != first["journey_id"]
    payment = await paid(tenant, second["journey_id"])
    # ... and once paid there, the first email's link shows it paid, not "Pay now".
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    assert "Payment received" in customer.page and "Pay now" not in customer.page
    # A later round would dun a paid claim: it is refused, saying when it was paid.
    await tenant.wait_for_stage(second["journey_id"], "expired", timeout=30)
    response = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts",
                                 {"contacts": [item]})
    assert response.status_code == 422, response.text
    [third] = response.json()["results"]
    assert third["status"] == "rejected"
    [error] = third["errors"]
    assert error["field"] == "claim.reference" and "already reported paid on" in error["message"]
    assert payment["paid_at"][:10] in error["message"]
    journeys = (await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}/journeys"))["items"]
    assert len(journeys) == 2
    assert len(mailbox.to(email)) == 2


async def test_a_claim_is_paid_once_whichever_journey_it_is_reported_on(tenant, mailbox):
    campaign = await tenant.create_campaign(payments=True, expires_after="PT4S",
                                            reminders={"interval": "PT1H", "max_count": 1})
    email = unique_email("paid-once")
    item = {"external_id": "paid-once", "email": email, "claim": claim(8)}
    first = (await tenant.enrol(campaign["id"], item))["results"][0]
    await tenant.wait_for_stage(first["journey_id"], "expired", timeout=30)
    second = (await tenant.enrol(campaign["id"], item))["results"][0]
    # Reported on the ended journey (the client's books name the first), the claim is paid:
    # the running one stops asking.
    reported = await paid(tenant, first["journey_id"], amount="125.50")
    running = await tenant.journey(second["journey_id"])
    assert running["paid_at"] == reported["paid_at"]
    # The same payment again on the other journey is a repeat; another amount is a conflict.
    assert (await paid(tenant, second["journey_id"], amount="125.5"))["paid_at"] == \
        reported["paid_at"]
    conflict = await tenant.post(f"/v1/journeys/{second['journey_id']}/payment-completed",
                                 {"amount": "49.00"})
    assert conflict.status_code == 409, conflict.text
    funnel = await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}/funnel")
    assert funnel["total"]["paid"] == 1
    # Both rounds' report rows show the payment as recorded, amount and all.
    base = f"/v1/campaigns/{campaign['id']}"
    rows = {r["journey_id"]: r for r in csv.DictReader(io.StringIO(
        (await tenant.get(f"{base}/report.csv")).text))}
    entries = {r["journey_id"]: r for r in (await tenant.get(f"{base}/report.json")).json()["rows"]}
    for journey_id in (first["journey_id"], second["journey_id"]):
        assert (rows[journey_id]["paid"], rows[journey_id]["amount"]) == ("true", "125.50")
        assert datetime.fromisoformat(rows[journey_id]["paid_at"]) == datetime.fromisoformat(
            reported["paid_at"])
        assert (entries[journey_id]["paid"], entries[journey_id]["amount"]) == (True, "125.50")


async def test_a_repeat_with_other_claim_details_is_refused(tenant, mailbox):
    campaign = await tenant.create_campaign(payments=True)
    email = unique_email("changes")
    item = {"external_id": "changes", "email": email, "claim": claim(6)}
    [first] = (await tenant.enrol(campaign["id"], item))["results"]
    # The same details again, however written, are a repeat.
    [same] = (await tenant.enrol(campaign["id"], {
        "external_id": "changes", "claim": claim(6, amount="125.5")}))["results"]
    assert same["status"] == "already_enrolled" and same["journey_id"] == first["journey_id"]
    response = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts", {"contacts": [
        {"external_id": "changes", "claim": claim(6, amount="99.00", payment_url=f"{PAY}new")}]})
    assert response.status_code == 422, response.text
    [changed] = response.json()["results"]
    assert changed["status"] == "rejected"
    errors = {e["field"]: e["message"] for e in changed["errors"]}
    assert set(errors) == {"claim.amount", "claim.payment_url"}
    assert "125.50" in errors["claim.amount"] and f"{PAY}6" in errors["claim.payment_url"]
    [due] = (await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts", {"contacts": [
        {"external_id": "changes", "claim": claim(6, due_on="2027-01-31")}]})).json()["results"]
    assert due["errors"][0]["field"] == "claim.due_on"
    journey = await tenant.journey(first["journey_id"])
    assert (journey["claim"]["amount"], journey["claim"]["due_on"]) == ("125.50", "2099-12-31")
    [invitation] = await mailbox.wait_for(email)
    assert "€125.50" in invitation.text and "€99.00" not in invitation.text
    # A detail the claim was enrolled without is named as missing, in words.
    bare = {"external_id": "bare", "email": unique_email("bare"),
            "claim": {"reference": "INV-7", "payment_url": f"{PAY}7"}}
    await tenant.enrol(campaign["id"], bare)
    [added] = (await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts", {"contacts": [
        {**bare, "claim": claim(7)}]})).json()["results"]
    errors = {e["field"]: e["message"] for e in added["errors"]}
    assert set(errors) == {"claim.amount", "claim.due_on"}
    assert "with no amount;" in errors["claim.amount"]
    assert "with no due date;" in errors["claim.due_on"]


async def test_amounts_have_their_currencys_decimals(tenant, http, mailbox):
    campaign = await tenant.create_campaign(payments=True, languages=["en"])
    emails = {name: unique_email(name) for name in ("yen", "dinar")}
    response = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts", {"contacts": [
        {"external_id": "cents", "email": unique_email(),
         "claim": claim(1, amount="1.50", currency="JPY")},
        {"external_id": "yen", "email": emails["yen"], "claim": claim(2, amount="150",
                                                                       currency="JPY")},
        {"external_id": "dinar", "email": emails["dinar"],
         "claim": claim(3, amount="12.345", currency="KWD")},
        {"external_id": "too-fine", "email": unique_email(), "claim": claim(4, amount="1.005")},
        {"external_id": "secret", "email": unique_email(),
         "claim": claim(5, payment_url="https://shop:hunter2@pay.example.com/5")},
    ]})
    assert response.status_code == 202, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [
        "rejected", "accepted", "accepted", "rejected", "rejected"]
    assert [(e["field"], e["message"]) for r in results if r["errors"] for e in r["errors"]] == [
        ("claim.amount", "JPY amounts have no decimals"),
        ("claim.amount", "EUR amounts have at most 2 decimals"),
        ("claim.payment_url", "must not carry a user name or password")]
    journeys = {r["external_id"]: r["journey_id"] for r in results if r["journey_id"]}
    # The dinar's three decimals reach the customer as entered.
    [invitation] = await mailbox.wait_for(emails["dinar"])
    assert "12.345" in invitation.text
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    assert "12.345" in customer.page
    # A payment reported in the claim's currency's decimals, and not in more.
    fine = await tenant.post(f"/v1/journeys/{journeys['yen']}/payment-completed",
                             {"amount": "1.5"})
    assert fine.status_code == 422, fine.text
    assert fine.json()["error"]["fields"][0]["field"] == "amount"
    assert (await paid(tenant, journeys["dinar"], amount="12.345"))["paid_at"]


async def test_a_cancelled_request_does_not_say_an_open_claim_needs_nothing(
    tenant, http, mailbox, temporal_env
):
    campaign = await tenant.create_campaign(payments=True)
    people = {name: unique_email(name) for name in ("owes", "schuldig", "settled")}
    enrolled = await tenant.enrol(campaign["id"], *(
        {"external_id": name, "email": email, "claim": claim(i), "language": language}
        for i, ((name, email), language) in enumerate(zip(people.items(), ("en", "nl", "en")))))
    journeys = {r["external_id"]: r["journey_id"] for r in enrolled["results"]}
    await mailbox.wait_for(people["settled"])
    await paid(tenant, journeys["settled"])
    pages = {}
    for name, journey_id in journeys.items():
        [invitation] = await mailbox.wait_for(people[name])
        pages[name] = mailbox.link(invitation)
        journey = await tenant.wait_for_stage(journey_id, "invited")
        # The operator's Cancel in the Temporal UI (here through the client, as the UI does).
        await temporal_env.client.get_workflow_handle(journey["workflow_id"]).cancel()
        await tenant.wait_for_stage(journey_id, "cancelled")

    async def page_of(name: str) -> str:
        customer = Customer(http)
        await customer.open(pages[name])
        return customer.page
    # The operator, not the client, cancelled them: the page does not say the client withdrew
    # the request, but to ask the client about it.
    asked = f"If you have a question about it, please contact {tenant.name}."
    owes = await page_of("owes")
    assert asked in owes and "Pay now" in owes
    assert "You do not need to do anything" not in owes and "withdrawn" not in owes
    schuldig = await page_of("schuldig")
    assert "U hoeft niets te doen" not in schuldig and "Nu betalen" in schuldig
    assert f"neem dan contact op met {tenant.name}" in schuldig
    settled = await page_of("settled")
    assert asked in settled and "Payment received" in settled


async def test_every_message_of_a_payment_reminder_speaks_of_the_claim(
    tenant, mailbox, settings
):
    """The email (subject, text, the Pay now button), the SMS and the printed letter tell the
    customer what they are about: the reference, the amount and due date as their language
    writes them, where to pay, and still the offer to update the contact details. A campaign
    without payments keeps asking only to confirm the email address."""
    campaign = await tenant.create_campaign(payments=True, channel_plan=[
        {"channel": "email"}, {"channel": "sms", "after": "PT1S"},
        {"channel": "letter", "after": "PT1S"}])
    expected = {
        "en": {"claim": "Open payment: INV-{n}, €125.50, due on December 31, 2099.",
               "subject": f"{tenant.name}: open payment INV-{{n}}", "pay": "Pay now",
               "update": "update your contact details",
               "letter": "You can pay it on your personal page",
               "letter_subject": "Open payment INV-{n}"},
        "nl": {"claim": "Openstaande betaling: INV-{n}, € 125,50, te betalen uiterlijk "
                        "31 december 2099.",
               "subject": f"{tenant.name}: openstaande betaling INV-{{n}}", "pay": "Nu betalen",
               "update": "werk uw contactgegevens bij",
               "letter": "U kunt deze betalen op uw persoonlijke pagina",
               "letter_subject": "Openstaande betaling INV-{n}"},
    }
    people = {}
    for n, language in enumerate(expected, start=40):
        email, mobile = unique_email(language), mobile_number()
        person = await contact(tenant, email=email, mobile=mobile, address=ADDRESS,
                               language=language)
        people[language] = (n, person, email, mobile)
        await tenant.enrol(campaign["id"], {"external_id": person["external_id"],
                                            "claim": claim(n)})

    def said(text: str, language: str, key: str, n: int) -> bool:
        # Amounts and dates carry no-break spaces where the language wants them.
        return expected[language][key].format(n=n) in text.replace("\xa0", " ")

    for language, (n, person, email, mobile) in people.items():
        [mail] = await mailbox.wait_for(email)
        assert said(mail.subject, language, "subject", n), mail.subject
        assert "confirm" not in mail.subject and "bevestig" not in mail.subject
        assert said(mail.text, language, "claim", n), mail.text
        assert f"{PAY}{n}" in mail.text
        assert f'href="{PAY}{n}"' in mail.html and expected[language]["pay"] in mail.html
        assert mailbox.link(mail)  # the personal page, to update the details, is still there

        sms = (await wait_for_sms(settings, mobile))["text"]
        assert said(sms, language, "claim", n), sms
        assert expected[language]["update"] in sms and "/c/" in sms

        letter = await wait_for_letter(settings, person["last_name"])
        printed = PrintedLetter(
            (settings.letter_outbox_dir / f"{letter['id']}.pdf").read_bytes(),
            settings.letter_outbox_dir / f"read-{letter['id']}").text()
        assert said(printed, language, "claim", n), printed
        assert expected[language]["letter"] in printed
        assert said(printed, language, "letter_subject", n)

    plain = await tenant.create_campaign(languages=["en"])
    address = unique_email("plain")
    await tenant.enrol(plain["id"], {"external_id": address, "email": address})
    [mail] = await mailbox.wait_for(address)
    assert mail.subject == f"{tenant.name}: please confirm your email address"
    assert "payment" not in mail.text


async def test_claim_errors_say_what_is_accepted(tenant):
    """A message that offers what is refused sends the client round in circles."""
    campaign = await tenant.create_campaign(payments=True)
    response = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts", {"contacts": [
        {"external_id": "js", "email": unique_email(),
         "claim": claim(1, payment_url="javascript:alert(1)")},
        {"external_id": "exp", "email": unique_email(), "claim": claim(2, amount="1e3")},
        {"external_id": "none", "email": unique_email(), "claim": claim(3, currency="XXX")},
        {"external_id": "gold", "email": unique_email(), "claim": claim(4, currency="XAU")},
        {"external_id": "cfa", "email": unique_email(),
         "claim": claim(5, amount="1000", currency="XOF")},
        # A template's host left empty: read as the host "claims", every "Pay now" would lead
        # there.
        {"external_id": "no-host", "email": unique_email(),
         "claim": claim(6, payment_url="https:///claims/6")},
    ]})
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["rejected"] * 4 + ["accepted", "rejected"], results
    assert [(e["field"], e["message"]) for r in results for e in r["errors"]] == [
        ("claim.payment_url", "must be an https:// URL"),
        ("claim.amount", "must be a plain decimal number such as 1000 or 12.50, not in "
                         "exponent notation"),
        ("claim.currency", "'XXX' is not the ISO 4217 code of a currency in use (e.g. EUR, USD)"),
        ("claim.currency", "'XAU' is not the ISO 4217 code of a currency in use (e.g. EUR, USD)"),
        ("claim.payment_url", "must name the host of the payment page after https://, e.g. "
                              "https://pay.example.com/...")]


async def test_a_payment_url_too_long_or_the_customer_cannot_reach_is_refused_by_item(
        tenant, settings):
    """Every email and letter of the claim carries the link: one of thousands of characters
    would go into each, and one on localhost or a private network address leads the
    customer's browser to their own machine or nowhere, never to the client's payment page.
    Dev mode, whose payment page under test runs on the developer's machine, allows those hosts
    as it allows a custom domain on http."""
    local = ["https://localhost/claims/1", "https://pay.localhost/claims/2",
             "https://127.0.0.1/claims/3", "https://[::1]/claims/4", "https://10.1.2.3/claims/5",
             "https://192.168.0.10/claims/6", "https://169.254.169.254/claims/7",
             "https://[::ffff:127.0.0.1]/claims/8"]
    too_long = PAY + "x" * (2049 - len(PAY))
    fits = PAY + "x" * (2048 - len(PAY))
    async with own_api(settings.model_copy(update={"dev_mode": False}), tenant) as production:
        campaign = await production.create_campaign(payments=True)
        response = await production.post(f"/v1/campaigns/{campaign['id']}/contacts", {
            "contacts": [{"external_id": f"local-{n}", "email": unique_email(),
                          "claim": claim(n, payment_url=url)} for n, url in enumerate(local)]
            + [{"external_id": "long", "email": unique_email(),
                "claim": claim(20, payment_url=too_long)},
               {"external_id": "fits", "email": unique_email(),
                "claim": claim(21, payment_url=fits)}]})
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["rejected"] * 9 + ["accepted"], results
    assert {(e["field"], e["message"]) for r in results[:8] for e in r["errors"]} == {
        ("claim.payment_url", "must be on a host the customer's browser can reach as the "
                              "client's payment page: not localhost nor a loopback, private or "
                              "link-local address (allowed in dev mode)")}
    assert results[8]["errors"] == [{"field": "claim.payment_url",
                                     "message": "must be at most 2048 characters"}]

    campaign = await tenant.create_campaign(payments=True)
    in_dev = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts", {"contacts": [
        {"external_id": "dev", "email": unique_email(),
         "claim": claim(30, payment_url="https://localhost:8443/claims/30")}]})
    assert in_dev.json()["results"][0]["status"] == "accepted", in_dev.text


def reference(length: int) -> str:
    # One character outside GSM-7 sends the whole text as UCS-2, 67 characters a segment.
    return f"Ł{length:03d}".ljust(length, "x")


async def longest_reference(tenant, campaign_id: str, **details) -> tuple[int, list[dict]]:
    """The length of the longest reference (of `reference`) the campaign's SMS can name in a
    claim with these other details, and each probed length's error."""
    # Contacts not created yet would be refused for lack of a mobile number, and are not
    # written: which references are refused for the SMS is seen without starting anything.
    lengths = list(range(4, 101))
    probe = await tenant.post(f"/v1/campaigns/{campaign_id}/contacts", {"contacts": [
        {"external_id": f"probe-{n}", "claim": claim(n, reference=reference(n), **details)}
        for n in lengths]})
    assert probe.status_code == 422, probe.text
    errors = [r["errors"][0] for r in probe.json()["results"]]
    too_long = [n for n, e in zip(lengths, errors) if e["field"] == "claim.reference"]
    assert too_long, errors
    # Longer references never fit again; shorter ones are refused for the missing number only.
    assert too_long == lengths[lengths.index(too_long[0]):], too_long
    assert too_long[0] - 1 in lengths, errors
    return too_long[0] - 1, errors


async def test_a_reference_the_sms_cannot_carry_is_refused_and_the_longest_one_is_sent(
        tenant, settings):
    """A reference that makes the campaign's SMS longer than its segments allow would have the
    SMS skipped when sent, unseen: it is refused by item instead (`claim.reference`), measured
    as the sender measures it, in each of the campaign's languages; the longest one accepted
    goes out whole."""
    campaign = await tenant.create_campaign(payments=True, channel_plan=[{"channel": "sms"}])
    assert campaign["spec"]["languages"] == ["en", "nl"]
    longest, errors = await longest_reference(tenant, campaign["id"])
    assert f"at most {settings.sms_max_segments} allowed" in errors[-1]["message"], errors[-1]
    assert "UCS-2" in errors[-1]["message"]

    people = [await contact(tenant, mobile=mobile_number(), language=language)
              for language in ("en", "nl")]
    answer = await tenant.enrol(campaign["id"], *(
        {"external_id": person["external_id"], "claim": claim(n, reference=reference(n))}
        for person, n in zip(people, (longest, longest + 1))))
    assert [r["status"] for r in answer["results"]] == ["accepted", "rejected"], answer
    assert answer["results"][1]["errors"][0]["field"] == "claim.reference"

    [mobile] = [p["value"] for p in people[0]["contact_points"] if p["kind"] == "mobile"]
    sms = await wait_for_sms(settings, mobile)
    assert reference(longest) in sms["text"] and "/c/" in sms["text"]
    assert sms["segments"] <= settings.sms_max_segments


async def test_a_change_that_would_make_an_open_claims_sms_too_long_is_refused(tenant):
    """Enrolment checks each claim against the campaign's SMS as they are; running journeys
    read the wording when they send, so a change that lengthens it is checked against the
    claims of the journeys still open and unpaid, which would otherwise have their SMS skipped
    unseen. They keep the plan they started with: SMS added to it send them nothing."""
    email_only = await tenant.create_campaign(payments=True, channel_plan=[{"channel": "email"}])
    # Outside GSM-7, as UCS-2: far too long for the SMS, fine in an email.
    person = await contact(tenant, email=unique_email(), mobile=mobile_number())
    assert (await tenant.enrol(email_only["id"], {"external_id": person["external_id"],
                                                 "claim": claim(1, reference="Ł-" + "x" * 98)})
            )["accepted"] == 1
    with_sms = [{"channel": "email"}, {"channel": "sms", "after": "P3D"}]
    assert len((await tenant.ok("PATCH", f"/v1/campaigns/{email_only['id']}", {
        "channel_plan": with_sms}))["spec"]["channel_plan"]) == 2

    campaign = await tenant.create_campaign(payments=True, channel_plan=with_sms)
    path = f"/v1/campaigns/{campaign['id']}"
    references = ["INV-" + "7" * 96, "INV-" + "8" * 96]  # long, within the default SMS
    people = [await contact(tenant, email=unique_email(), mobile=mobile_number())
              for _ in references]
    enrolled = await tenant.enrol(campaign["id"], *(
        {"external_id": person["external_id"], "claim": claim(n, reference=reference)}
        for n, (person, reference) in enumerate(zip(people, references))))
    assert enrolled["accepted"] == 2, enrolled

    # Longer and longer wording: measured with the sample claim, the text fits; with these
    # longer references it would not, which is said before the text's own limit is.
    for repeats in range(1, 60):
        wordy = {"messages": {"sms_reminder": {"en": {"text": "Please pay. " * repeats}}}}
        response = await tenant.http.patch(path, headers=tenant.auth, json=wordy)
        if response.status_code != 200:
            break
    assert response.status_code == 422, response.text
    [error] = response.json()["error"]["fields"]
    assert error["field"] == "messages", (repeats, error)
    assert any(error["message"].startswith(
        f"2 open journeys are about a claim that the campaign's SMS could no longer name, e.g. "
        f"{reference!r}: too long for the campaign's SMS") for reference in references), error
    # Nothing of the change was kept; changes that leave the SMS as they are pass.
    kept = await tenant.ok("PATCH", path, {"expires_after": "P20D"})
    assert kept["spec"]["messages"]["sms_reminder"]["en"]["text"].count("Please") == repeats - 1

    # Paid, a claim's journey sends no more reminders: only the other one is in the way.
    await paid(tenant, enrolled["results"][0]["journey_id"])
    refused = await tenant.ok("PATCH", path, wordy, status=422)
    assert refused["error"]["fields"][0]["message"].startswith(
        f"1 open journey is about a claim that the campaign's SMS could no longer name, e.g. "
        f"{references[1]!r}"), refused


async def test_a_custom_domain_too_long_for_an_open_claims_sms_is_refused(tenant):
    """The domain is in every SMS's link, those of running journeys too: one that would leave
    an open claim's SMS too long is refused, the client's naming the campaign, and the
    campaign's own."""
    campaign = await tenant.create_campaign(payments=True, channel_plan=[{"channel": "sms"}],
                                            name="Dunning")
    longest = reference((await longest_reference(tenant, campaign["id"]))[0])
    person = await contact(tenant, mobile=mobile_number())
    assert (await tenant.enrol(campaign["id"], {"external_id": person["external_id"],
                                                "claim": claim(1, reference=longest)})
            )["accepted"] == 1
    # Longer and longer domains: without a claim the SMS fit; with this one they would not.
    kept = None
    for labels in range(1, 20):
        domain = "https://" + "contact." * labels + "example"
        response = await tenant.http.put("/v1/branding", headers=tenant.auth,
                                         json={"custom_domain": domain})
        if response.status_code != 200:
            break
        kept = domain
    assert response.status_code == 422, response.text
    [error] = response.json()["error"]["fields"]
    assert error["field"] == "custom_domain"
    assert error["message"].startswith(
        f"campaign 'Dunning': 1 open journey is about a claim that the campaign's SMS could no "
        f"longer name, e.g. {longest!r}"), (labels, error)
    assert (await tenant.ok("GET", "/v1/branding"))["branding"].get("custom_domain") == kept
    # The campaign's own branding, replaced or patched, is measured the same way.
    path = f"/v1/campaigns/{campaign['id']}"
    for method, where, body, field in (
            ("PUT", f"{path}/branding", {"custom_domain": domain}, "custom_domain"),
            ("PATCH", path, {"branding": {"custom_domain": domain}}, "branding")):
        response = await tenant.http.request(method, where, headers=tenant.auth, json=body)
        assert response.status_code == 422, (method, response.text)
        [error] = response.json()["error"]["fields"]
        assert error["field"] == field and error["message"].startswith(
            "1 open journey is about a claim that the campaign's SMS could no longer name"), error
    assert (await tenant.ok("GET", path))["spec"]["branding"] is None


async def test_a_claim_reported_paid_engages_the_contact(tenant, http, mailbox):
    """CRM.COM: a contact becomes engaged once a business transaction takes place for it; a
    claim reported paid is one, whether or not the customer ever left data. A contact engaged
    before keeps the time it was first engaged."""
    campaign = await tenant.create_campaign(payments=True)
    [r] = (await tenant.enrol(campaign["id"], {"external_id": "pays", "email": unique_email(),
                                               "claim": claim(1)}))["results"]
    before = (await tenant.get(f"/v1/contacts/{r['contact_id']}")).json()
    assert (before["engagement_state"], before["engaged_at"]) == ("never_engaged", None)
    when = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    payment = await paid(tenant, r["journey_id"], paid_at=when)
    contact = (await tenant.get(f"/v1/contacts/{r['contact_id']}")).json()
    assert contact["engagement_state"] == "engaged"
    assert datetime.fromisoformat(contact["engaged_at"]) == datetime.fromisoformat(
        payment["paid_at"])

    address = unique_email("entered-first")
    [r] = (await tenant.enrol(campaign["id"], {"external_id": "enters", "email": address,
                                               "claim": claim(2)}))["results"]
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), email=address, consent=["terms"])
    await tenant.wait_for_stage(r["journey_id"], "verification_pending")
    engaged = (await tenant.get(f"/v1/contacts/{r['contact_id']}")).json()
    assert engaged["engagement_state"] == "engaged"
    await paid(tenant, r["journey_id"], paid_at=when)
    after = (await tenant.get(f"/v1/contacts/{r['contact_id']}")).json()
    assert after["engaged_at"] == engaged["engaged_at"]


async def test_a_claim_past_its_due_date_is_called_overdue(tenant, http, mailbox, settings):
    """A collector enrols claims already overdue, and reminds of others after their day: the
    messages and the page do not ask to pay by a day gone by ("te betalen uiterlijk"), they
    say since when the payment is overdue. A claim still due is measured for its SMS in both
    wordings, as its reminders will call it overdue once the day has passed."""
    campaign = await tenant.create_campaign(
        payments=True, reminders={"interval": "PT1S", "max_count": 1})
    overdue = {"en": ("Open payment: INV-{n}, €125.50, overdue since November 30, 2025.",
                      "INV-{n}: €125.50, overdue since November 30, 2025"),
               "nl": ("Openstaande betaling: INV-{n}, € 125,50, vervallen sinds 30 november "
                      "2025.", "INV-{n}: € 125,50, vervallen sinds 30 november 2025")}
    people = {language: unique_email(language) for language in overdue}
    enrolled = await tenant.enrol(campaign["id"], *(
        {"external_id": language, "email": email, "language": language,
         "claim": claim(n, due_on="2025-11-30")}
        for n, (language, email) in enumerate(people.items())))
    assert enrolled["accepted"] == 2, enrolled
    for n, (language, email) in enumerate(people.items()):
        said, shown = (text.format(n=n) for text in overdue[language])
        invitation, reminder = await mailbox.wait_for(email, count=2)
        for mail in (invitation, reminder):
            assert said in mail.text.replace("\xa0", " "), mail.text
        customer = Customer(http)
        await customer.open(mailbox.link(invitation))
        assert shown in customer.page.replace("\xa0", " "), customer.page
    # Not due yet: as before.
    address = unique_email("due")
    await tenant.enrol(campaign["id"], {"external_id": "due", "email": address,
                                        "claim": claim(7, due_on="2099-11-30")})
    [invitation, *_] = await mailbox.wait_for(address)
    assert "Open payment: INV-7, €125.50, due on November 30, 2099." in invitation.text

    texting = await tenant.create_campaign(payments=True, languages=["en"],
                                           channel_plan=[{"channel": "sms"}])
    # English says "overdue since" at more length than "due on": a reference that fits the
    # SMS of a claim due in 2099 only while it is not overdue would be skipped then.
    longest, _ = await longest_reference(tenant, texting["id"], due_on="2025-11-30")
    assert (await longest_reference(tenant, texting["id"], due_on="2099-11-30"))[0] == longest
    person = await contact(tenant, mobile=mobile_number())
    assert (await tenant.enrol(texting["id"], {
        "external_id": person["external_id"],
        "claim": claim(8, reference=reference(longest), due_on="2025-11-30")}))["accepted"] == 1
    [mobile] = [p["value"] for p in person["contact_points"] if p["kind"] == "mobile"]
    sms = await wait_for_sms(settings, mobile)
    assert f"{reference(longest)}, €125.50, overdue since November 30, 2025." in sms["text"]
    assert sms["segments"] <= settings.sms_max_segments


async def test_an_earlier_rounds_page_shows_the_claim_as_it_stands(tenant, http, mailbox):
    """A contact enrolled with the claim again once its journey ended may owe another amount
    (costs added), by another day, at another payment link; the first email's link is the one
    the customer keeps: its page asks for what is owed now, not what was, and asks for it
    again when the claim, withdrawn, is owed anew."""
    campaign = await tenant.create_campaign(payments=True, expires_after="PT3S",
                                            reminders={"interval": "PT1H", "max_count": 1})
    email = unique_email("rounds")
    first = (await tenant.enrol(campaign["id"], {"external_id": "rounds", "email": email,
                                                 "claim": claim(1)}))["results"][0]
    [invitation] = await mailbox.wait_for(email)
    await tenant.wait_for_stage(first["journey_id"], "expired", timeout=30)
    raised = claim(1, amount="140.00", payment_url=f"{PAY}1-costs", due_on="2099-01-31")
    second = (await tenant.enrol(campaign["id"], {"external_id": "rounds", "claim": raised})
              )["results"][0]
    assert second["status"] == "accepted", second
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    assert "INV-1: €140.00, due on January 31, 2099" in customer.page, customer.page
    assert f'href="{PAY}1-costs"' in customer.page and f'href="{PAY}1"' not in customer.page

    # Withdrawn, the claim leaves both pages; enrolled with it anew, it is owed again there.
    await tenant.wait_for_stage(second["journey_id"], "expired", timeout=30)
    await tenant.ok("POST", f"/v1/journeys/{first['journey_id']}/claim-withdrawn")
    await customer.open(mailbox.link(invitation))
    assert "Pay now" not in customer.page
    third = (await tenant.enrol(campaign["id"], {"external_id": "rounds", "claim": raised})
             )["results"][0]
    assert third["status"] == "accepted", third
    await customer.open(mailbox.link(invitation))
    assert f'href="{PAY}1-costs"' in customer.page and "Pay now" in customer.page


async def test_one_payment_reported_on_two_rounds_at_once_is_taken_each_time(tenant):
    """A payment system that knows both rounds of a claim may report the payment on each of
    them at the same moment (retries, a report per journey): every report is answered with
    the one payment, none with a 503 to retry, and the payment is recorded once."""
    campaign = await tenant.create_campaign(payments=True, expires_after="PT3S",
                                            reminders={"interval": "PT1H", "max_count": 1})
    item = {"external_id": "both-rounds", "email": unique_email("both"), "claim": claim(1)}
    first = (await tenant.enrol(campaign["id"], item))["results"][0]
    await tenant.wait_for_stage(first["journey_id"], "expired", timeout=30)
    second = (await tenant.enrol(campaign["id"], item))["results"][0]
    rounds = [first["journey_id"], second["journey_id"]]
    answers = await asyncio.gather(*(
        tenant.post(f"/v1/journeys/{journey_id}/payment-completed", {"amount": "125.50"})
        for journey_id in rounds * 6))
    assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers]
    assert len({a.json()["paid_at"] for a in answers}) == 1
    histories = [(await tenant.journey(journey_id))["history"] for journey_id in rounds]
    assert sum(e["type"] == "payment_completed" for h in histories for e in h) == 1


async def test_a_payment_on_an_earlier_round_is_of_the_claim_as_it_stands(
    tenant, mailbox, webhook_receiver
):
    """The client's books may name the first round of a claim the contact was enrolled with
    again at another amount, by another day, at another link: the payment reported there is
    of the claim as it stands, which its webhook carries and the report shows on every round."""
    hook = await tenant.subscribe(webhook_receiver, ["journey.payment_completed"])
    campaign = await tenant.create_campaign(payments=True, expires_after="PT3S",
                                            reminders={"interval": "PT1H", "max_count": 1})
    email = unique_email("raised")
    first = (await tenant.enrol(campaign["id"], {"external_id": "raised", "email": email,
                                                 "claim": claim(1)}))["results"][0]
    await tenant.wait_for_stage(first["journey_id"], "expired", timeout=30)
    raised = claim(1, amount="140.00", payment_url=f"{PAY}1-costs", due_on="2099-01-31")
    second = (await tenant.enrol(campaign["id"], {"external_id": "raised", "claim": raised})
              )["results"][0]
    assert second["status"] == "accepted", second
    report = f"/v1/campaigns/{campaign['id']}/report.csv"

    async def rows() -> dict[str, dict]:
        return {r["journey_id"]: r for r in csv.DictReader(io.StringIO(
            (await tenant.get(report)).text))}
    before = await rows()
    assert set(before) == {first["journey_id"], second["journey_id"]}
    assert {(r["claim_amount"], r["due_on"], r["paid"]) for r in before.values()} == {
        ("140.00", "2099-01-31", "false")}

    # Reported on the first round without an amount: the claim was paid as it stands.
    await paid(tenant, first["journey_id"])
    [delivery] = await webhook_receiver.wait_for(hook, "journey.payment_completed")
    data = delivery.payload["data"]
    assert data["claim"] == {**raised, "currency": "EUR"}, data
    assert (data["amount"], data["reference"]) == ("140.00", "INV-1")
    assert {(r["amount"], r["claim_amount"], r["paid"]) for r in (await rows()).values()} == {
        ("140.00", "140.00", "true")}
