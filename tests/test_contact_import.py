"""CSV import on the real stack: a 10,000-row file with 3 % bad rows (good rows in, the error CSV
exact, re-import a no-op), and an import that enrols its contacts into a campaign."""

import asyncio
import csv
import dataclasses
import io
import uuid

import httpx
from sqlalchemy import text
from temporalio.testing import ActivityEnvironment

from activities.contact_import import ContactImporter
from api.main import create_app
from contacts import registry
from contacts.audit import Actor
from contacts.schemas import MediumIn
from core.contracts import EnrolImportedInput, ImportBatchInput, PlanImportInput
from core.vocabulary import ActorType
from db import crud
from db.models import Contact
from db.session import transaction
from tests.helpers import eventually, handler_descriptions, own_api
from tests.histories import save_history
from workflows.contact_import import ContactImportWorkflow, import_workflow_id

RULE = "(last_name AND id_number) OR ssn"
HEADER = ["external_id", "first_name", "last_name", "id_number", "ssn", "email", "mobile",
          "tags", "address_type", "address_line1", "postal_code", "city", "country"]
BAD = [  # (column, bad value, message in the error CSV)
    ("email", "not-an-email", "not a valid email address"),
    ("mobile", "12", "too short to be a phone number"),
    ("ssn", "", f"required by the uniqueness rule {RULE!r}"),
    ("address_type", "boat", "unknown address type; one of ['billing', 'business', 'home', "
                             "'po_box']"),
]


def contacts_file(n: str, rows: int, bad_every: int | None, delimiter: str = ";"
                  ) -> tuple[bytes, list[tuple[int, str, str]]]:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(HEADER)
    errors = []
    for i in range(rows):
        row = {"external_id": f"imp-{n}-{i}", "first_name": f"First{i}",
               "last_name": f"Last; {i}", "id_number": f"ID{n}{i}", "ssn": f"S{n}{i}",
               "email": f"p{i}.{n}@example.com", "mobile": f"+316{10000000 + i}",
               "tags": "vip|import", "address_type": "home", "address_line1": f"Straat {i}",
               "postal_code": "1234 AB", "city": "Utrecht", "country": "NL"}
        if bad_every and i % bad_every == 0:
            column, value, message = BAD[(i // bad_every) % len(BAD)]
            row[column] = value
            errors.append((i + 2, column, message))  # line 1 is the header
        writer.writerow([row[c] for c in HEADER])
    return "\ufeff".encode() + out.getvalue().encode(), errors


async def upload(tenant, content: bytes, **params) -> dict:
    response = await tenant.http.post("/v1/contact-imports", content=content, params=params,
                                      headers={**tenant.auth, "content-type": "text/csv"})
    assert response.status_code == 202, response.text
    return response.json()


async def finished(tenant, import_id: str, timeout: float = 120) -> dict:
    async def probe():
        job = (await tenant.get(f"/v1/contact-imports/{import_id}")).json()
        return job if job["status"] == "completed" else None
    return await eventually(probe, timeout=timeout, what=f"import {import_id}")


async def state_of(sessions, client_id) -> tuple:
    async with transaction(sessions) as session:
        return (await session.execute(text(
            "SELECT count(*), max(updated_at), (SELECT count(*) FROM audit_entries a WHERE "
            "a.client_id = :c AND a.action <> 'read'), (SELECT count(*) FROM contact_addresses "
            "ad WHERE ad.client_id = :c) FROM contacts WHERE client_id = :c"),
            {"c": client_id})).one()


async def test_ten_thousand_rows_with_bad_ones(tenant, sessions):
    response = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                     json={"person_rule": RULE})
    assert response.status_code == 200
    template = await tenant.get("/v1/contact-imports/template")
    assert template.status_code == 200 and template.text.startswith("external_id,kind,")

    n = uuid.uuid4().hex[:6]
    content, expected_errors = contacts_file(n, 10_000, bad_every=33)
    assert len(expected_errors) == 304  # about 3 %
    job = await upload(tenant, content)
    assert job["total_rows"] == 10_000 and job["status"] == "pending"
    job = await finished(tenant, job["id"])
    good = 10_000 - len(expected_errors)
    assert (job["created"], job["updated"], job["unchanged"], job["failed"]) == (
        good, 0, 0, len(expected_errors))
    assert job["processed_rows"] == 10_000

    errors = await tenant.get(job["errors_url"])
    assert errors.headers["content-type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(errors.text))) == [["line", "field", "message"]] + [
        [str(line), field, message] for line, field, message in expected_errors]

    # Good rows are in, with their contact points, address and tags.
    [one] = (await tenant.get("/v1/contacts", external_id=f"imp-{n}-1")).json()["items"]
    assert one["last_name"] == "Last; 1" and one["tags"] == ["import", "vip"]
    assert {p["kind"]: p["value"] for p in one["contact_points"]} == {
        "email": f"p1.{n}@example.com", "mobile": "+31610000001"}
    assert one["addresses"][0]["line1"] == "Straat 1" and one["addresses"][0]["primary"]
    before = await state_of(sessions, tenant.id)
    assert before[0] == good

    # The same file again changes nothing at all.
    again = await finished(tenant, (await upload(tenant, content))["id"])
    assert (again["created"], again["updated"], again["unchanged"], again["failed"]) == (
        0, 0, good, len(expected_errors))
    assert await state_of(sessions, tenant.id) == before
    assert (await tenant.get(again["errors_url"])).text == errors.text

    async with transaction(sessions) as session:
        assert await session.scalar(text("SELECT count(*) FROM contact_imports WHERE client_id"
                                         " = :c AND content IS NOT NULL"), {"c": tenant.id}) == 0

    # A row of another contact of its own (new external id) that the rule takes for an existing
    # one is refused, not merged into it.
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([HEADER, [
        f"imp-{n}-new", "Dupe", "Last; 1", f"ID{n}1", f"S{n}1", "", "", "", "", "", "", "", ""]])
    clash = await finished(tenant, (await upload(tenant, out.getvalue().encode()))["id"])
    assert (clash["created"], clash["updated"], clash["failed"]) == (0, 0, 1), clash
    assert list(csv.reader(io.StringIO((await tenant.get(clash["errors_url"])).text)))[1] == [
        "2", "external_id", f"the uniqueness rule finds contact {one['id']} under another "
                            "external_id"]
    [still] = (await tenant.get("/v1/contacts", external_id=f"imp-{n}-1")).json()["items"]
    assert still["first_name"] == "First1"


async def test_a_finished_import_has_the_registrys_statistics_refreshed(tenant, sessions):
    """A launch to the new contacts may follow at once: planned on statistics from before the
    import, its audience query read every contact point for each contact."""
    async def analysed() -> dict:
        async with transaction(sessions) as session:
            return dict((await session.execute(text(
                "SELECT relname, last_analyze FROM pg_stat_user_tables WHERE relname = ANY(:t)"),
                {"t": list(crud.REGISTRY_TABLES)})).all())
    before = await analysed()
    content, _ = contacts_file(uuid.uuid4().hex[:6], 50, bad_every=None)
    job = await finished(tenant, (await upload(tenant, content))["id"])
    assert job["created"] == 50

    async def refreshed() -> dict | None:
        after = await analysed()
        return after if all(after.get(t) is not None and (
            before.get(t) is None or after[t] > before[t]) for t in crud.REGISTRY_TABLES) else None
    await eventually(refreshed, timeout=10, what="the registry's tables analysed")


async def test_bad_files_are_refused_whole(tenant):
    for content, message in [
        (b"", "empty"), (b"external_id,shoe_size\r\n1,2\r\n", "unknown column"),
        ("external_id\r\nM\xfcller\r\n".encode("latin-1"), "not UTF-8"),
        (b"\n\nexternal_id,email\nx,x@example.com\n", "line 1 names no columns"),
        (b',,\r\nx,y,z\r\n', "line 1 names no columns"),
        (b"external_id\rfirst_name\nx,y\n", "line 1"),  # a lone CR beside LF line ends
        (b",".join(b"col%d" % i for i in range(20_000)) + b"\r\n", "and 19990 more"),
        (b"external_id,Email,email\r\nx,x@example.com,y@example.com\r\n",
         "column(s) ['email'] appear twice"),
    ]:
        response = await tenant.http.post("/v1/contact-imports", content=content,
                                          headers={**tenant.auth, "content-type": "text/csv"})
        assert response.status_code == 422, response.text
        assert message in response.json()["error"]["message"]


async def test_a_file_not_sent_as_csv_is_refused(tenant, sessions):
    """A JSON body (or a form, or no type at all) was read as CSV."""
    content = b"external_id,last_name\r\nct-1,Typed\r\n"
    for sent in ("application/json", "application/x-www-form-urlencoded", None):
        headers = tenant.auth if sent is None else {**tenant.auth, "content-type": sent}
        refused = await tenant.http.post("/v1/contact-imports", content=content, headers=headers)
        assert refused.status_code == 415, sent
        error = refused.json()["error"]
        assert error["code"] == "unsupported_media_type" and "text/csv" in error["message"]
        assert error["fields"][0]["field"] == "content-type"
    async with transaction(sessions) as session:
        assert await session.scalar(text("SELECT count(*) FROM contact_imports WHERE client_id"
                                         " = :c"), {"c": tenant.id}) == 0
    for sent in ("text/csv; charset=utf-8", "Text/CSV"):
        accepted = await tenant.http.post("/v1/contact-imports", content=content,
                                          headers={**tenant.auth, "content-type": sent})
        assert accepted.status_code == 202, sent


async def test_import_enrols_contacts_into_a_campaign(tenant, other_tenant, temporal_env,
                                                     record_histories):
    campaign = await tenant.create_campaign()
    n = uuid.uuid4().hex[:6]
    content, _ = contacts_file(n, 20, bad_every=None, delimiter=",")
    refused = await other_tenant.http.post(
        "/v1/contact-imports", content=content, params={"campaign_id": campaign["id"]},
        headers={**other_tenant.auth, "content-type": "text/csv"})
    assert refused.status_code == 404
    job = await finished(tenant, (await upload(tenant, content, campaign_id=campaign["id"]))["id"])
    assert (job["created"], job["enrolled"], job["not_enrolled"]) == (20, 20, 0)
    journeys = (await tenant.get(f"/v1/campaigns/{campaign['id']}/journeys")).json()["items"]
    assert sorted(j["external_id"] for j in journeys) == sorted(f"imp-{n}-{i}" for i in range(20))
    assert (await other_tenant.get(f"/v1/contact-imports/{job['id']}")).status_code == 404

    handle = temporal_env.client.get_workflow_handle_for(ContactImportWorkflow.run,
                                                         import_workflow_id(job["id"]))
    progress = await handle.query(ContactImportWorkflow.progress)
    assert progress.processed_rows == progress.total_rows == 20
    # The Temporal UI says what the query tells, as for journeys.
    assert "rows in the file and processed" in (await handler_descriptions(handle))["progress"]
    if record_histories:
        await save_history(handle, "contact_import_enrolled")

    # A changed row updates its contact (matched by the rule) and says what changed.
    changed = await finished(tenant, (await upload(tenant, content.replace(
        b"First7,", b"Seventh,")))["id"])
    assert (changed["created"], changed["updated"], changed["unchanged"]) == (0, 1, 19)
    [seventh] = (await tenant.get("/v1/contacts", external_id=f"imp-{n}-7")).json()["items"]
    assert seventh["first_name"] == "Seventh"
    trail = (await tenant.get(f"/v1/contacts/{seventh['id']}/audit")).json()["items"]
    assert trail[-2]["detail"]["changes"] == {"first_name": {"old": "First7", "new": "Seventh"}}


async def test_files_as_spreadsheets_write_them(tenant):
    """Lines ending in CR alone (old Excel for Mac), trailing delimiters (Excel's empty
    columns): both are read as the rows they hold."""
    n = uuid.uuid4().hex[:6]
    for name, content in [
        ("cr", f"external_id,first_name,email\rcr-{n},Cr,cr.{n}@example.com\r".encode()),
        ("trailing", f"external_id;first_name;email;;\r\ntr-{n};Tr;tr.{n}@example.com;;\r\n"
                     .encode()),
        # A quoted cell holding a line break of the other kind (which a name may not hold):
        # the file was refused whole, where only its row is at fault.
        ("cr, a line in a cell", f"external_id,first_name\rcl-{n},\"Cl\nAchter\"\r"
         f"cm-{n},Cm\r".encode()),
    ]:
        job = await finished(tenant, (await upload(tenant, content))["id"])
        assert (job["created"], job["failed"]) == ((1, 1) if "cell" in name else (1, 0)), (
            name, job)
    [cr] = (await tenant.get("/v1/contacts", external_id=f"cr-{n}")).json()["items"]
    assert cr["first_name"] == "Cr"
    # The row's own fault, by its line; the next row read as the next line.
    [error] = list(csv.DictReader(io.StringIO(
        (await tenant.get(f"/v1/contact-imports/{job['id']}/errors")).text)))
    assert (error["line"], error["field"]) == ("2", "first_name"), error
    assert (await tenant.get("/v1/contacts", external_id=f"cm-{n}")).json()["items"]


async def test_a_stray_quote_costs_only_its_row(tenant):
    """A quote that swallows the next rows, text after a closing quote, a quote never closed:
    each is its row's error by line, and the rows around them are imported."""
    n = uuid.uuid4().hex[:6]
    job = await finished(tenant, (await upload(tenant, (
        f'external_id,first_name\r\nq1-{n},"Ann\r\nq2-{n},Bob\r\nq3-{n},"Carl"o\r\n'
        f'q4-{n},"Dora ""D"" van Dam"\r\nq5-{n},"Eve\r\n').encode()))["id"])
    assert (job["created"], job["failed"]) == (2, 3), job
    errors = list(csv.DictReader(io.StringIO((await tenant.get(job["errors_url"])).text)))
    assert [(e["line"], e["field"]) for e in errors] == [("2", "row"), ("4", "row"),
                                                         ("6", "row")]
    assert all("quote" in e["message"] for e in errors)
    names = {c["external_id"]: c["first_name"] for c in (await tenant.get(
        "/v1/contacts", limit=100)).json()["items"] if c["external_id"].endswith(n)}
    assert names == {f"q2-{n}": "Bob", f"q4-{n}": 'Dora "D" van Dam'}


async def test_a_row_with_a_cell_of_several_lines_and_a_cell_short_is_told_so(tenant):
    """A well-quoted cell with a line break in a row one cell short was reported as a quote
    left open, with a second error on its next line."""
    n = uuid.uuid4().hex[:6]
    job = await finished(tenant, (await upload(tenant, (
        f'external_id,first_name,tags\r\nm1-{n},"Ann\r\nMarie"\r\n'
        f'm2-{n},Bob,x\r\n').encode()))["id"])
    assert (job["created"], job["failed"]) == (1, 1), job
    errors = list(csv.DictReader(io.StringIO((await tenant.get(job["errors_url"])).text)))
    assert [(e["line"], e["field"], e["message"]) for e in errors] == [
        ("2", "row", "2 cells where the header has 3")], errors


async def test_a_row_for_a_known_contact_need_not_repeat_its_name(tenant):
    n = uuid.uuid4().hex[:6]
    await finished(tenant, (await upload(
        tenant, f"external_id,first_name\r\nk-{n},Kim\r\n".encode()))["id"])
    job = await finished(tenant, (await upload(tenant, (
        f"external_id,email,tags\r\nk-{n},kim.{n}@example.com,recur\r\n"
        f"new-{n},new.{n}@example.com,recur\r\n").encode()))["id"])
    assert (job["updated"], job["created"], job["failed"]) == (1, 0, 1), job
    [kim] = (await tenant.get("/v1/contacts", external_id=f"k-{n}")).json()["items"]
    assert kim["first_name"] == "Kim" and kim["tags"] == ["recur"]
    # A row that would create a contact still needs a name.
    errors = list(csv.DictReader(io.StringIO((await tenant.get(job["errors_url"])).text)))
    assert [(e["line"], e["field"], e["message"]) for e in errors] == [
        ("3", "last_name", "a person needs a first or last name")]


async def test_a_later_row_about_the_same_contact_updates_it_within_a_batch_too(tenant):
    """Rows a batch apart updated what the earlier one created; in one batch the later one was
    refused ("same contact as line 2") and what it added was lost."""
    n = uuid.uuid4().hex[:6]
    job = await finished(tenant, (await upload(tenant, (
        f"external_id,first_name,tags,email\r\n"
        f"dw-{n},Ann,one,\r\n"
        f"dw-{n},Ann,two,ann.{n}@example.com\r\n"
        f"dw-{n},Ann,two,ann.{n}@example.com\r\n").encode()))["id"])
    assert (job["created"], job["updated"], job["unchanged"], job["failed"]) == (1, 1, 1, 0), job
    [ann] = (await tenant.get("/v1/contacts", external_id=f"dw-{n}")).json()["items"]
    assert ann["tags"] == ["one", "two"]
    assert [p["value"] for p in ann["contact_points"]] == [f"ann.{n}@example.com"]


async def test_rows_not_enrolled_are_reported_by_line(tenant, mailbox):
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    n = uuid.uuid4().hex[:6]
    content = (f"external_id,first_name,email,mobile\r\ne-{n}-1,Ann,ann.{n}@example.com,\r\n"
               f"e-{n}-2,Bob,,+31612345678\r\n").encode()
    job = await finished(tenant, (await upload(tenant, content, campaign_id=campaign["id"]))["id"])
    assert (job["created"], job["enrolled"], job["not_enrolled"]) == (2, 1, 1)
    errors = list(csv.DictReader(io.StringIO((await tenant.get(job["errors_url"])).text)))
    assert [(e["line"], e["field"]) for e in errors] == [("3", "email")], errors
    assert errors[0]["message"].startswith("not enrolled: ")

    # A payment-reminder campaign needs a claim per contact, which a file does not carry.
    payments = await tenant.create_campaign(payments=True)
    refused = await tenant.http.post(
        "/v1/contact-imports", content=content, params={"campaign_id": payments["id"]},
        headers={**tenant.auth, "content-type": "text/csv"})
    assert refused.status_code == 409 and "claims" in refused.text


async def test_a_campaign_archived_during_an_import_gets_none_of_its_contacts(
    tenant, sessions, settings
):
    """The import checked the campaign when it was uploaded; archived since, it takes no
    contacts when the import comes to enrol them."""
    campaign = await tenant.create_campaign()
    content, _ = contacts_file(uuid.uuid4().hex[:6], 5, bad_every=None, delimiter=",")
    job = await finished(tenant, (await upload(tenant, content))["id"])
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"status": "archived"})
    result = await ActivityEnvironment().run(
        ContactImporter(sessions, settings).enrol_imported,
        EnrolImportedInput(import_id=job["id"], campaign_id=campaign["id"]))
    assert (result.enrolled, result.not_enrolled) == (0, 5)
    journeys = (await tenant.get(f"/v1/campaigns/{campaign['id']}/journeys")).json()["items"]
    assert journeys == []


async def test_an_import_whose_workflow_was_terminated_fails_and_the_file_again_finishes_it(
    tenant, sessions, temporal_env
):
    """An operator terminated the import's workflow in the Temporal UI: the import read as
    running for ever. It is failed, says why, and the same file again imports the rest."""
    content, _ = contacts_file(uuid.uuid4().hex[:6], 1500, bad_every=None, delimiter=",")
    async with sessions() as blocker, blocker.begin():
        # Holds the first batch at its first write, so the import is caught running.
        await blocker.execute(text("LOCK TABLE contacts IN SHARE MODE"))
        job = await upload(tenant, content)

        async def running():
            return (await tenant.get(f"/v1/contact-imports/{job['id']}")).json()[
                "status"] == "running"
        await eventually(running, what="the import to run")
        await temporal_env.client.get_workflow_handle(import_workflow_id(job["id"])).terminate(
            reason="operator")
        failed = (await tenant.get(f"/v1/contact-imports/{job['id']}")).json()
    assert (failed["status"], failed["processed_rows"], failed["total_rows"]) == (
        "failed", 0, 1500)
    assert "Uploading the same file again imports the rest" in failed["reason"]

    # The batch caught mid-way still writes its rows, as one cut off by the operator would.
    async def first_batch_in():
        got = (await tenant.get(f"/v1/contact-imports/{job['id']}")).json()
        return got if got["processed_rows"] == 1000 else None
    failed = await eventually(first_batch_in, what="the batch")
    assert failed["status"] == "failed" and failed["created"] == 1000
    async with transaction(sessions) as session:
        assert await session.scalar(text("SELECT content IS NULL FROM contact_imports WHERE id"
                                         " = :i"), {"i": job["id"]})

    again = await finished(tenant, (await upload(tenant, content))["id"])
    assert (again["created"], again["unchanged"], again["failed"], again["reason"]) == (
        500, 1000, 0, None)


async def test_a_file_is_read_in_the_charset_its_content_type_names(tenant):
    """A spreadsheet saved as windows-1252 (or UTF-16) was read as UTF-8: its é and ü were
    refused or garbled."""
    n = uuid.uuid4().hex[:6]
    names = {f"cs-{n}-1": ("Renée", "Müller"), f"cs-{n}-2": ("Zoë", "Gürsoy")}
    text_ = "external_id,first_name,last_name\r\n" + "".join(
        f"{ext},{first},{last}\r\n" for ext, (first, last) in names.items())
    for charset, content in (("windows-1252", text_.encode("cp1252")),
                             ('"UTF-16"', text_.encode("utf-16"))):
        response = await tenant.http.post(
            "/v1/contact-imports", content=content,
            headers={**tenant.auth, "content-type": f"text/csv; charset={charset}"})
        assert response.status_code == 202, response.text
        job = await finished(tenant, response.json()["id"])
        assert job["failed"] == 0 and job["created"] + job["unchanged"] == 2, job
        for ext, (first, last) in names.items():
            [contact] = (await tenant.get("/v1/contacts", external_id=ext)).json()["items"]
            assert (contact["first_name"], contact["last_name"]) == (first, last)
    # A charset that is no text encoding (or only Python's) is refused before anything is stored.
    for charset in ("klingon-8", "base64", "undefined", "unicode_escape", "idna"):
        refused = await tenant.http.post(
            "/v1/contact-imports", content=text_.encode(),
            headers={**tenant.auth, "content-type": f"text/csv; charset={charset}"})
        assert refused.status_code == 415, refused.text
        assert "charset" in refused.json()["error"]["message"]
    # Bytes the named charset cannot hold are a clear 422, not a garbled import.
    broken = await tenant.http.post(
        "/v1/contact-imports", content=b"external_id\r\n\x81\x81\r\n",
        headers={**tenant.auth, "content-type": "text/csv; charset=ascii"})
    assert broken.status_code == 422 and "ascii" in broken.json()["error"]["message"]


async def test_an_import_whose_workflow_never_started_starts_when_read(tenant, settings,
                                                                      sessions):
    """Temporal was unreachable at the upload: the file was stored, its workflow never
    started, and the import read `pending` for ever."""
    content, _ = contacts_file(uuid.uuid4().hex[:6], 30, bad_every=None, delimiter=",")
    cut_off = create_app(settings.model_copy(update={"temporal_address": "127.0.0.1:1"}))
    async with cut_off.router.lifespan_context(cut_off):
        transport = httpx.ASGITransport(app=cut_off, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            upload_ = await http.post("/v1/contact-imports", content=content,
                                      headers={**tenant.auth, "content-type": "text/csv"})
            # An API that has never reached Temporal says it is briefly unavailable.
            assert upload_.status_code == 503, upload_.text
            assert upload_.headers["retry-after"]
            async with transaction(sessions) as session:
                job_id, status = (await session.execute(text(
                    "SELECT id, status FROM contact_imports WHERE client_id = :c"),
                    {"c": tenant.id})).one()
            assert status == "pending"
            read = await http.get(f"/v1/contact-imports/{job_id}", headers=tenant.auth)
            assert read.status_code == 503, read.text
    job = await finished(tenant, job_id)
    assert (job["created"], job["failed"], job["reason"]) == (30, 0, None)


async def test_a_locale_in_the_language_column_is_taken_as_its_language(tenant):
    """CRM exports write locales (`nl-BE`) and upper case (`DE`); a row is not lost for it."""
    n = uuid.uuid4().hex[:6]
    job = await finished(tenant, (await upload(tenant, (
        f"external_id,last_name,language\r\nbe-{n},Peeters,nl-BE\r\nde-{n},Weber,DE\r\n"
        f"xx-{n},Nobody,klingon\r\n").encode()))["id"])
    assert (job["created"], job["failed"]) == (2, 1), job
    languages = {c["external_id"]: c["language"]
                 for c in (await tenant.get("/v1/contacts", q=n)).json()["items"]}
    assert languages == {f"be-{n}": "nl", f"de-{n}": "de"}
    errors = list(csv.DictReader(io.StringIO((await tenant.get(job["errors_url"])).text)))
    assert [(e["line"], e["field"]) for e in errors] == [("4", "language")]


async def batch_attempts(temporal_env, job: dict) -> list[int]:
    """The attempt each batch of the import ended on: a batch retried for a unique index its
    checks should have seen first ends on a later one."""
    history = await temporal_env.client.get_workflow_handle(
        import_workflow_id(job["id"])).fetch_history()
    return [e.activity_task_started_event_attributes.attempt for e in history.events
            if e.HasField("activity_task_started_event_attributes")]


async def errors_of(tenant, job: dict) -> list[tuple[str, str, str]]:
    return [(e["line"], e["field"], e["message"]) for e in csv.DictReader(io.StringIO(
        (await tenant.get(job["errors_url"])).text))]


async def test_two_rows_giving_one_card_or_loyalty_id_do_not_stall_the_import(tenant,
                                                                              temporal_env):
    """The batch checked a row's card against the database only: two rows of one file giving
    the same card hit the unique index on every attempt, and the import stayed `running`
    for ever with none of the batch's rows in."""
    n = uuid.uuid4().hex[:6]
    job = await finished(tenant, (await upload(tenant, (
        f"external_id,last_name,card_number\r\ngood-{n}-1,Good,\r\n"
        f"card-{n}-1,C1,4111111111111111\r\ncard-{n}-2,C2,4111 1111 1111 1111\r\n"
        f"good-{n}-2,Good,\r\n").encode()))["id"], timeout=30)
    assert (job["status"], job["created"], job["failed"]) == ("completed", 3, 1), job
    assert await errors_of(tenant, job) == [("4", "card_number", "belongs to another contact")]
    found = (await tenant.get("/v1/contacts/lookup", kind="card",
                              value="4111111111111111")).json()
    assert found["external_id"] == f"card-{n}-1", found

    # The same for two known contacts each given one loyalty id.
    for ext in (f"k-{n}-1", f"k-{n}-2"):
        await tenant.ok("POST", "/v1/contacts", {"external_id": ext, "last_name": "K"}, 201)
    job = await finished(tenant, (await upload(tenant, (
        f"external_id,loyalty_id\r\nk-{n}-1,LOY-{n}\r\nk-{n}-2,LOY-{n}\r\n").encode()))["id"],
        timeout=30)
    assert (job["status"], job["updated"], job["failed"]) == ("completed", 1, 1), job
    assert await errors_of(tenant, job) == [("3", "loyalty_id", "belongs to another contact")]
    assert set(await batch_attempts(temporal_env, job)) == {1}


async def test_a_batch_that_meets_a_taken_card_again_is_written_row_by_row(tenant, settings,
                                                                           sessions):
    """A retried batch whose bulk write meets a unique index again (another writer's card,
    committed while the batch wrote) wrote nothing and was retried for ever. From its second
    attempt on it writes its rows one by one: that row fails on its line, the others are in."""
    n = uuid.uuid4().hex[:6]
    other = await tenant.ok("POST", "/v1/contacts", {"external_id": f"o-{n}", "last_name": "O"},
                            201)
    content = (f"external_id,last_name,card_number\r\ngood-{n}-1,Good,\r\n"
               f"card-{n},C,5555555555554444\r\ngood-{n}-2,Good,\r\n").encode()
    # Stored but not started (Temporal unreachable): the batch runs here, as attempt 2.
    cut_off = create_app(settings.model_copy(update={"temporal_address": "127.0.0.1:1"}))
    async with cut_off.router.lifespan_context(cut_off), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=cut_off, raise_app_exceptions=False),
            base_url="http://testserver") as http:
        assert (await http.post("/v1/contact-imports", content=content, headers={
            **tenant.auth, "content-type": "text/csv"})).status_code == 503
    async with transaction(sessions) as session:
        job_id = str(await session.scalar(text(
            "SELECT id FROM contact_imports WHERE client_id = :c"), {"c": tenant.id}))
    importer = ContactImporter(sessions, settings)
    env = ActivityEnvironment()
    plan = await env.run(importer.plan_import, PlanImportInput(job_id, 1000))
    env.info = dataclasses.replace(env.info, attempt=2)

    async with sessions() as writer, writer.begin():
        # Another writer gives the card to another contact and commits only once the batch
        # waits on it: the batch read no owner of the card.
        reg = await registry.registry_for(writer, client_id=tenant.id,
                                          secret_key=settings.secret_key.get_secret_value())
        contact = await writer.get_one(Contact, uuid.UUID(other["id"]))
        await registry.add_medium(writer, reg, contact, MediumIn(
            kind="card", value="5555555555554444"), Actor(ActorType.api_key, "test"))
        batch = asyncio.create_task(env.run(importer.import_batch,
                                            ImportBatchInput(job_id, plan.batches[0])))

        async def waiting():
            async with transaction(sessions) as session:
                return await session.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query ILIKE '%identification_media%'"))
        await eventually(waiting, what="the batch to wait on the card")
    counts = await batch
    assert (counts.created, counts.failed) == (2, 1), counts
    async with transaction(sessions) as session:
        errors = (await session.execute(text(
            "SELECT line, field, message FROM contact_import_errors WHERE import_id = :i"),
            {"i": job_id})).all()
    assert [tuple(e) for e in errors] == [(3, "card_number", "belongs to another contact")]
    for ext in (f"good-{n}-1", f"good-{n}-2"):
        assert (await tenant.get("/v1/contacts", external_id=ext)).json()["items"], ext


async def test_a_row_for_a_known_contact_need_not_repeat_the_rule_fields_or_address(
    tenant, temporal_env
):
    """A row adding a tag to a known contact was refused for the uniqueness rule's fields and
    the mandatory address the contact has (a PATCH takes the tag alone); a row about a known
    company without a `kind` cell was held to the person rule."""
    await tenant.ok("PATCH", "/v1/contact-settings", {
        "person_rule": RULE, "company_rule": "company_name",
        "address_types": [{"name": "home", "mandatory": True}, {"name": "billing"}]})
    n = uuid.uuid4().hex[:6]
    home = {"type": "home", "line1": "H 1", "city": "Utrecht", "country": "NL"}
    await tenant.ok("POST", "/v1/contacts", {
        "external_id": f"k-{n}", "last_name": "Smith", "id_number": f"ID{n}", "ssn": f"S{n}",
        "addresses": [home]}, 201)
    await tenant.ok("POST", "/v1/contacts", {
        "external_id": f"co-{n}", "kind": "company", "company_name": f"Acme {n}",
        "addresses": [home]}, 201)
    job = await finished(tenant, (await upload(tenant, (
        f"external_id,ssn,tags\r\nk-{n},,vip\r\nco-{n},,vip\r\n"
        # Matched by the rule's SSN alone, adding what the row by external_id adds too.
        f",S{n},vip|again\r\nnew-{n},,vip\r\n").encode()))["id"])
    assert (job["updated"], job["created"], job["failed"]) == (3, 0, 1), job
    # The two rows about Kim took turns, as rows of two batches would.
    assert set(await batch_attempts(temporal_env, job)) == {1}
    [kim] = (await tenant.get("/v1/contacts", external_id=f"k-{n}")).json()["items"]
    assert kim["tags"] == ["again", "vip"] and kim["ssn"] == f"S{n}"
    [acme] = (await tenant.get("/v1/contacts", external_id=f"co-{n}")).json()["items"]
    assert (acme["kind"], acme["tags"]) == ("company", ["vip"])
    # A row that would make a contact still needs all of it (one message a field).
    assert await errors_of(tenant, job) == [
        ("5", "address_type", "a home address is required"),
        ("5", "id_number", f"required by the uniqueness rule {RULE!r}"),
        ("5", "last_name", f"required by the uniqueness rule {RULE!r}"),
        ("5", "ssn", f"required by the uniqueness rule {RULE!r}")]


async def test_a_row_about_a_known_company_without_a_kind_cell_is_about_a_company(tenant):
    """A row without a `kind` cell was read as a person's: about a known company, its number
    was keyed by the person rule, found a person with the same number as well, and the row
    was refused as matching two contacts."""
    await tenant.ok("PATCH", "/v1/contact-settings", {"person_rule": "id_number",
                                                       "company_rule": "id_number"})
    n = uuid.uuid4().hex[:6]
    await tenant.ok("POST", "/v1/contacts", {"external_id": f"p-{n}", "last_name": "P",
                                             "id_number": f"NL{n}"}, 201)
    await tenant.ok("POST", "/v1/contacts", {"external_id": f"co-{n}", "kind": "company",
                                             "company_name": "Acme", "id_number": f"NL{n}"}, 201)
    job = await finished(tenant, (await upload(tenant, (
        f"external_id,id_number,tags\r\nco-{n},NL{n},vip\r\n").encode()))["id"])
    assert (job["updated"], job["failed"]) == (1, 0), await errors_of(tenant, job)
    [acme] = (await tenant.get("/v1/contacts", external_id=f"co-{n}")).json()["items"]
    assert (acme["kind"], acme["tags"]) == ("company", ["vip"])


async def test_importing_a_former_address_again_brings_it_back(tenant):
    """A sync flipping between two addresses added a copy at each flip."""
    n = uuid.uuid4().hex[:6]
    head = "external_id,last_name,address_type,address_line1,postal_code,city,country\r\n"
    for line1 in ("Str 1", "Str 2", "Str 1"):
        job = await finished(tenant, (await upload(tenant, (
            f"{head}ad-{n},A,home,{line1},1234 AB,Utrecht,NL\r\n").encode()))["id"])
        assert job["failed"] == 0 and job["created"] + job["updated"] == 1, job
    [found] = (await tenant.get("/v1/contacts", external_id=f"ad-{n}")).json()["items"]
    addresses = (await tenant.get(f"/v1/contacts/{found['id']}",
                                  include_inactive_addresses="true")).json()["addresses"]
    assert sorted((a["line1"], a["active"], a["primary"]) for a in addresses) == [
        ("Str 1", True, True), ("Str 2", False, False)]


async def test_a_file_in_another_charset_is_told_how_to_name_it(tenant, settings):
    """A windows-1252 file sent as plain text/csv was told only "not UTF-8 (byte 82)"; a UTF-16
    file whose BOM says so was refused the same way; a file under MAX_IMPORT_BYTES was refused
    as over it once converted to UTF-8."""
    n = uuid.uuid4().hex[:6]
    text_ = f"external_id;last_name\r\nch-{n}-1;Bäcker\r\n"
    refused = await tenant.http.post("/v1/contact-imports", content=text_.encode("cp1252"),
                                     headers={**tenant.auth, "content-type": "text/csv"})
    assert refused.status_code == 422
    assert refused.json()["error"]["message"] == (
        "the file is not UTF-8 (byte 37): save it as CSV UTF-8, or name its encoding in the "
        "Content-Type, e.g. text/csv; charset=windows-1252")
    job = await finished(tenant, (await upload(tenant, text_.encode("utf-16")))["id"])
    assert (job["created"], job["failed"]) == (1, 0), job
    [baker] = (await tenant.get("/v1/contacts", external_id=f"ch-{n}-1")).json()["items"]
    assert baker["last_name"] == "Bäcker"

    latin = ("external_id,last_name\r\n" + "".join(
        f"l-{n}-{i},{'é' * 20}\r\n" for i in range(25))).encode("latin-1")
    assert len(latin) <= 1000 < len(latin.decode("latin-1").encode())
    async with own_api(settings.model_copy(update={"max_import_bytes": 1000}), tenant) as small:
        sent = [await small.http.post("/v1/contact-imports", content=content, headers={
            **small.auth, "content-type": "text/csv; charset=iso-8859-1"})
            for content in (latin, latin + b"x,y\r\n" * 40)]
    assert [s.status_code for s in sent] == [202, 413], sent[0].text
    job = await finished(tenant, sent[0].json()["id"])
    assert (job["created"], job["failed"]) == (25, 0), job


async def test_empty_cells_past_the_header_are_left_out_of_a_row(tenant):
    """A row with a trailing delimiter more than its header (a spreadsheet's empty column) was
    a failed line; a cell with something in it there still is."""
    n = uuid.uuid4().hex[:6]
    job = await finished(tenant, (await upload(tenant, (
        f"external_id,first_name\r\ntc-{n}-1,Tc,\r\ntc-{n}-2,Td,, \r\n"
        f"tc-{n}-3,Te,x\r\n").encode()))["id"])
    assert (job["created"], job["failed"]) == (2, 1), job
    assert await errors_of(tenant, job) == [("4", "row", "3 cells where the header has 2")]
