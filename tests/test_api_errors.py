"""Bad input gets a clear 4xx with the field named, never a 500, and never loses good data."""

import re
import uuid

import httpx
import pytest

from api.main import create_app
from tests.helpers import Customer, on_the_page, unique_email

CAMPAIGN = {"name": "Checks", "languages": ["en"]}


@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Bearer cj_0123456789abcdef_wrong",
                                    "Basic dXNlcjpwYXNz"])
async def test_missing_or_wrong_api_key_is_401(http, header):
    headers = {"Authorization": header} if header else {}
    response = await http.get("/v1/campaigns", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


async def test_malformed_json_is_400(tenant):
    response = await tenant.http.post("/v1/campaigns", content=b"{not json",
                                      headers={**tenant.auth, "content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


@pytest.mark.parametrize("content_type", [None, "text/plain",
                                          "application/x-www-form-urlencoded"])
async def test_json_sent_as_another_type_is_told_to_say_json(tenant, content_type):
    """`curl -d` sends a JSON object as a form: "the body should be a valid dictionary" sent
    the client looking at its JSON rather than its Content-Type."""
    headers = {**tenant.auth, **({"content-type": content_type} if content_type else {})}
    response = await tenant.http.post("/v1/campaigns", headers=headers,
                                      content=b'{"name": "Checks", "languages": ["en"]}')
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in response.json()["error"]["message"]


async def test_json_that_is_not_utf8_is_malformed_json(tenant):
    response = await tenant.http.post(
        "/v1/campaigns", content='{"name": "Café"}'.encode("latin-1"),
        headers={**tenant.auth, "content-type": "application/json; charset=iso-8859-1"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


@pytest.mark.parametrize(("change", "field"), [
    ({"name": ""}, "name"),
    ({"expires_after": "three days"}, "expires_after"),
    ({"expires_after": "-P1D"}, "expires_after"),
    ({"reminders": {"interval": "PT0S"}}, "reminders.interval"),
    ({"expires_after": 30}, "expires_after"),  # seconds or days? A number is refused.
    ({"reminders": {"max_count": 99}}, "reminders.max_count"),
    # A number is written as one: true was 1, "1_0" ten.
    ({"reminders": {"interval": "PT1H", "max_count": True}}, "reminders.max_count"),
    ({"reminders": {"interval": "PT1H", "max_count": "1_0"}}, "reminders.max_count"),
    ({"verification": {"code_max_resends": " 2 "}}, "verification.code_max_resends"),
    ({"languages": ["en", "xx"]}, "languages[1]"),  # not a language at all
    ({"languages": ["en", "fr"]}, "languages"),  # one the pages do not speak
    ({"unknown_setting": 1}, "unknown_setting"),
    ({"default_language": "de"}, "default_language"),  # not among its languages
    ({"collect": ["address"]}, "collect"),
    ({"verification": {"code_resend_cooldown": "-PT1M"}}, "verification.code_resend_cooldown"),
    ({"verification": {"code_ttl": "P400D"}}, "verification.code_ttl"),
    # Beyond the clock: the journey's task failed for ever on the date it would end.
    ({"expires_after": "P99999999D"}, "expires_after"),
    ({"expires_after": "P3651D"}, "expires_after"),
    ({"reminders": {"interval": "P99999999D", "max_count": 1}}, "reminders.interval"),
    ({"channel_plan": [{"channel": "email", "after": "P99999999D"}]}, "channel_plan[0].after"),
    ({"consents": [{"key": "news", "purpose": "newsletter", "channel": "pigeon",
                    "texts": {"en": {"text": "t", "version": "1"}}}]}, "consents[0].channel"),
])
async def test_campaign_validation_names_the_field(tenant, change, field):
    response = await tenant.post("/v1/campaigns", {**CAMPAIGN, **change})
    assert response.status_code == 422, response.text
    fields = [f["field"] for f in response.json()["error"]["fields"]]
    assert field in fields, fields
    # Our validators' messages as written, without pydantic's "Value error, " before them.
    assert not any(f["message"].startswith("Value error")
                   for f in response.json()["error"]["fields"]), response.text


ADDRESS = {"type": "home", "line1": "Main 1", "city": "Utrecht", "country": "NL"}
TEXTS = {"en": {"text": "I agree", "version": "1"}}


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("POST", "/v1/campaigns", {**CAMPAIGN, "payments": "yes"}, "payments"),
    ("POST", "/v1/campaigns", {**CAMPAIGN, "send_confirmation": "true"}, "send_confirmation"),
    ("POST", "/v1/campaigns", {**CAMPAIGN, "consents": [
        {"key": "terms", "purpose": "service-communication", "channel": "email", "mandatory": 1,
         "texts": TEXTS}]}, "consents[0].mandatory"),
    ("POST", "/v1/campaigns", {**CAMPAIGN, "recurrence": {
        "every": "P1D", "selection": {"missing_verified_only": "false"}}},
     "recurrence.selection.missing_verified_only"),
    ("POST", "/v1/contacts", {"external_id": "lax", "last_name": "Lax", "addresses": [
        {**ADDRESS, "primary": "false"}]}, "addresses[0].primary"),
    ("PATCH", "/v1/contact-settings", {"address_types": [{"name": "home", "mandatory": "no"}]},
     "address_types[0].mandatory"),
    ("POST", "/v1/kyc/definitions", {"name": "Lax", "level": 1, "requires_verification": "no",
                                     "rules": {"person": [{"field": "email"}]}},
     "requires_verification"),
])
async def test_a_json_boolean_is_true_or_false(tenant, method, path, body, field):
    """A string or number where JSON has true and false is refused, not read as one."""
    await tenant.ensure_purpose("service-communication")
    response = await tenant.http.request(method, path, json=body, headers=tenant.auth)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["fields"] == [
        {"field": field, "message": "must be true or false"}], response.text


async def test_a_json_boolean_is_true_or_false_in_every_request_body(tenant):
    endpoint = await tenant.ok("POST", "/v1/webhook-endpoints", {
        "url": "https://example.com/h", "events": ["*"]}, status=201)
    refused = await tenant.http.patch(f"/v1/webhook-endpoints/{endpoint['id']}",
                                      json={"enabled": "false"}, headers=tenant.auth)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["fields"] == [
        {"field": "enabled", "message": "must be true or false"}]
    campaign = await tenant.create_campaign(languages=["en"])
    launch = await tenant.post(f"/v1/campaigns/{campaign['id']}/launch", {"paused": "yes"})
    assert launch.status_code == 422, launch.text
    assert launch.json()["error"]["fields"][0]["field"] == "paused"
    imported = await tenant.post("/v1/consents/import", {"items": [{
        "external_id": "nobody", "purpose": "newsletter", "channel": "email", "granted": "yes",
        "given_at": "2024-01-01T00:00:00Z", "source": "import",
        "legal_text": {"language": "en"}}]})
    [item] = imported.json()["results"]
    assert {"field": "granted", "message": "must be true or false"} in item["errors"], item
    # true and false themselves are taken.
    enabled = await tenant.ok("PATCH", f"/v1/webhook-endpoints/{endpoint['id']}",
                              {"enabled": False})
    assert enabled["enabled"] is False


async def test_an_unknown_phone_region_is_refused(tenant):
    response = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                     json={"default_region": "XX"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["fields"] == [{
        "field": "default_region",
        "message": "unknown phone region 'XX'; use an ISO country code such as NL"}]


async def test_consent_needs_a_legal_text_per_language(tenant):
    await tenant.ensure_purpose("newsletter")
    response = await tenant.post("/v1/campaigns", {
        **CAMPAIGN, "languages": ["en", "de"],
        "consents": [{"key": "news", "purpose": "newsletter", "channel": "email",
                      "texts": {"en": {"text": "Newsletter please", "version": "1"}}}]})
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == [
        {"field": "consents", "message": "consent 'news' has no legal text for language(s) ['de']"}]


async def test_enrolment_keeps_good_contacts_and_reports_bad_ones_by_index(tenant, mailbox):
    campaign = await tenant.create_campaign(languages=["en"])
    good = unique_email()
    response = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts", {"contacts": [
        {"external_id": "ok-1", "email": good},
        {"external_id": "bad-email", "email": "not-an-email"},
        {"external_id": "ok-1", "email": unique_email()},
        {"external_id": "no-channel"},
        {"email": unique_email()},
        "not an object",
    ]})
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 5)
    by_index = {r["index"]: r for r in body["results"]}
    assert by_index[0]["status"] == "accepted"
    assert by_index[1]["errors"][0]["field"] == "email"
    assert "duplicate of item 0" in by_index[2]["errors"][0]["message"]
    assert by_index[3]["errors"][0]["field"] == "email"
    assert by_index[4]["errors"][0]["field"] == "external_id"
    assert by_index[5]["status"] == "rejected"
    await mailbox.wait_for(good)  # the good contact's journey runs

    # Repeating the request is safe: nothing is enrolled twice.
    again = await tenant.enrol(campaign["id"], {"external_id": "ok-1", "email": good})
    assert again["results"][0]["status"] == "already_enrolled"
    assert again["results"][0]["journey_id"] == by_index[0]["journey_id"]
    journeys = (await tenant.get(f"/v1/campaigns/{campaign['id']}/journeys")).json()
    assert len(journeys["items"]) == 1


async def test_enrolment_with_nothing_acceptable_is_422(tenant):
    campaign = await tenant.create_campaign(languages=["en"])
    response = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts",
                                 {"contacts": [{"external_id": "x", "email": "x@"}]})
    assert response.status_code == 422
    assert response.json()["results"][0]["errors"][0]["field"] == "email"


async def test_a_refused_enrolment_item_changes_nothing(tenant):
    """Known to the registry without an email address, the contact cannot be invited by email:
    the item is refused, and the names it carried are not written either."""
    created = await tenant.post("/v1/contacts", {"external_id": f"carl-{uuid.uuid4().hex[:6]}",
                                                 "first_name": "Carl", "last_name": "Orig"})
    assert created.status_code == 201, created.text
    contact = created.json()
    campaign = await tenant.create_campaign(languages=["en"])
    response = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts", {"contacts": [
        {"external_id": contact["external_id"], "first_name": "Mallory"}]})
    assert response.status_code == 422, response.text
    [refused] = response.json()["results"]
    assert refused["errors"][0]["field"] == "email" and refused["contact_id"] == contact["id"]
    now = (await tenant.get(f"/v1/contacts/{contact['id']}")).json()
    assert (now["first_name"], now["last_name"]) == ("Carl", "Orig")


async def test_unknown_journey_and_campaign_ids(tenant):
    assert (await tenant.get(f"/v1/journeys/{uuid.uuid4()}")).status_code == 404
    assert (await tenant.get("/v1/journeys/not-a-uuid")).status_code == 422


async def test_a_legal_text_of_blanks_is_refused(tenant):
    """A consent box with no words would be shown, and the ledger prove consent to blanks."""
    await tenant.ensure_purpose("newsletter")
    for body, field in [({"language": "en", "version": "9", "text": "   "}, "text"),
                        ({"language": "en", "version": " ", "text": "Real"}, "version"),
                        ({"language": "en", "version": "1\n2", "text": "Real"}, "version"),
                        ({"language": "en", "version": "9", "text": "\n\t"}, "text")]:
        refused = await tenant.post("/v1/purposes/newsletter/legal-texts", body)
        assert refused.status_code == 422, refused.text
        assert [f["field"] for f in refused.json()["error"]["fields"]] == [field]
    campaign = {**CAMPAIGN, "consents": [{
        "key": "news", "purpose": "newsletter", "channel": "email",
        "texts": {"en": {"version": "7", "text": "\n"}}}]}
    refused = await tenant.post("/v1/campaigns", campaign)
    assert refused.status_code == 422, refused.text
    assert [f["field"] for f in refused.json()["error"]["fields"]] == [
        "consents[0].texts.en.text"]
    # A text is kept as given, blanks around it included: its hash is the proof.
    kept = await tenant.post("/v1/purposes/newsletter/legal-texts",
                             {"language": "en", "version": "8", "text": " Send me news. "})
    assert kept.status_code == 201 and kept.json()["text"] == " Send me news. "


async def test_a_body_where_a_request_takes_none_is_refused_not_ignored(tenant, mailbox):
    """`{"ttl": ...}` on a dashboard link or `{"reason": ...}` on a cancel did nothing, with a
    2xx that let the client believe it had; a field the route reads from the query is said to
    be one."""
    link = await tenant.post("/v1/dashboard-links", {"ttl": "P1D"})
    assert link.status_code == 422, link.text
    assert link.json()["error"]["fields"] == [
        {"field": "ttl", "message": "this request takes no body"}]
    campaign = await tenant.create_campaign()
    address = unique_email("nobody")
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address,
                                                     "email": address}))["results"]
    await mailbox.wait_for(address)
    cancel = f"/v1/journeys/{enrolled['journey_id']}/cancel"
    refused = await tenant.post(cancel, {"reason": "moved abroad"})
    assert refused.status_code == 422, refused.text
    assert (await tenant.journey(enrolled["journey_id"]))["stage"] == "invited"
    erase = await tenant.post(f"/v1/contacts/{enrolled['contact_id']}/anonymise",
                              {"cancel_journeys": True})
    assert erase.status_code == 422, erase.text
    assert erase.json()["error"]["fields"] == [{
        "field": "cancel_journeys",
        "message": "is a query parameter here (?cancel_journeys=…), not a field of a body"}]
    assert (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}")).json()[
        "anonymised_at"] is None
    deleted = await tenant.http.request("DELETE", f"/v1/contacts/{enrolled['contact_id']}",
                                        json={"cancel_journeys": True}, headers=tenant.auth)
    assert deleted.status_code == 422, deleted.text
    assert [f["field"] for f in deleted.json()["error"]["fields"]] == ["cancel_journeys"]
    assert (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}")).status_code == 200
    for body in (b"[1]", b"cancel"):
        odd = await tenant.http.post(cancel, content=body, headers=tenant.auth)
        assert odd.status_code in (400, 422), odd.text
        assert odd.json()["error"]["code"] in ("malformed_json", "validation_error")
    # No body, `{}` and `null` are no body.
    assert (await tenant.http.post(cancel, headers=tenant.auth)).status_code == 200
    assert (await tenant.post(cancel, {})).status_code == 200
    assert (await tenant.post(cancel, None)).status_code == 200


@pytest.mark.parametrize("path", ["/c/unknown-token", "/v/unknown-token", "/c/" + "a" * 300,
                                  "/c/unknown-token/nonsense", "/c/", "/p", "/nowhere"])
async def test_unknown_link_shows_a_friendly_404_page(http, path):
    response = await http.get(path)
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "This link is not valid" in response.text
    assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["//v1", "//v1/contacts", "///v1/campaigns/nope", "/v1"])
async def test_an_api_path_not_found_is_a_json_404_however_many_slashes(http, path):
    """A client whose base URL ends in a slash asks `//v1/...`: its error handling reads JSON,
    which a page in the browser's language would break."""
    # A whole URL: httpx would fold the leading slashes of a path into the base URL's one.
    response = await http.get(f"http://testserver{path}")
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found", response.text


@pytest.mark.parametrize(("accept", "lang"), [
    # The first language the browser prefers that the pages speak, by its q-values.
    ("fy-NL,nl;q=0.9", "nl"), ("en;q=0.2, de-CH;q=0.8", "de"), ("nl;q=0, de", "de"),
    ("DE", "de"), ("fr, es;q=0.5", "en"), ("", "en"), ("nl;q=nonsense,de;q=0.5", "de")])
async def test_a_page_without_a_visit_speaks_the_browsers_language(http, accept, lang):
    response = await http.get("/c/no-such-token", headers={"accept-language": accept})
    assert f'<html lang="{lang}"' in response.text


@pytest.mark.parametrize("path", ["/c/unknown-token/nonsense", "/v/unknown-token/opt-out",
                                  "/l/K7M4-9QXD-2B5H"])
async def test_a_form_posted_to_a_link_that_takes_none_shows_the_page_too(http, path):
    response = await http.post(path, data={"x": "1"}, headers={"accept-language": "nl"})
    assert response.status_code == 405 and "allow" in response.headers
    assert "text/html" in response.headers["content-type"], response.text
    assert "Deze link is niet geldig" in response.text


async def test_forms_refuse_a_post_without_the_csrf_token(tenant, http, mailbox):
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    address = unique_email()
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "c", "email": address})
    [invitation] = await mailbox.wait_for(address)
    link = mailbox.link(invitation)
    customer = Customer(http)
    await customer.open(link)
    forged = await http.post(link, data={"email": address, "csrf_token": "1.forged"})
    assert forged.status_code == 403
    http.cookies.clear()  # a cross-site request carries no cookie of ours
    no_cookie = await http.post(link, data={"email": address, "csrf_token": customer.csrf()})
    assert no_cookie.status_code == 403
    journey = await tenant.journey(enrolled["results"][0]["journey_id"])
    assert journey["stage"] in ("invited", "opened") and journey["pending_email"] is None


async def test_webhook_endpoint_validation(tenant):
    bad = await tenant.post("/v1/webhook-endpoints", {"url": "ftp://example.com", "events": ["*"]})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "url"
    bad = await tenant.post("/v1/webhook-endpoints",
                            {"url": "https://example.com/h", "events": ["contact.nothing"]})
    assert bad.status_code == 422
    ok = await tenant.post("/v1/webhook-endpoints",
                           {"url": "https://example.com/h", "events": ["contact.data_verified"]})
    assert ok.status_code == 201 and ok.json()["secret"].startswith("whsec_")
    listed = (await tenant.get("/v1/webhook-endpoints")).json()
    assert "secret" not in listed[0]
    # Longer than we store (URLs may have 2,083 characters, our column takes 2,000): it was a
    # 500 from the database.
    too_long = "https://example.com/" + "a" * 1990
    for method, path in (("POST", "/v1/webhook-endpoints"),
                         ("PATCH", f"/v1/webhook-endpoints/{ok.json()['id']}")):
        bad = await tenant.http.request(method, path, headers=tenant.auth,
                                        json={"url": too_long, "events": ["*"]})
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"]["fields"][0]["field"] == "url", bad.text


# A time whose UTC is off the calendar: year 1 at +01:00 is year 0 in UTC.
OFF_THE_CALENDAR = ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-05:00"]


@pytest.mark.parametrize("at", OFF_THE_CALENDAR)
async def test_a_time_off_the_calendar_in_utc_is_a_field_error(tenant, at):
    """Every such time a client may give was a 500 once the database was asked for it."""
    contact = await tenant.ok("POST", "/v1/contacts", {"last_name": "Tijd"}, 201)
    for method, path, body, params, field in (
            ("GET", "/v1/contacts", None, {"updated_since": at}, "updated_since"),
            ("GET", f"/v1/contacts/{contact['id']}/activity", None, {"since": at}, "since"),
            ("POST", f"/v1/webhook-endpoints/{uuid.uuid4()}/replay",
             {"since": at, "until": "2026-01-01T00:00:00Z"}, None, "since")):
        response = await tenant.http.request(method, path, headers=tenant.auth, json=body,
                                             params=params)
        assert response.status_code == 422, (path, response.text)
        [error] = response.json()["error"]["fields"]
        assert error == {"field": field, "message": "is out of range: in UTC it falls outside "
                                                    "the years 1 to 9999"}, path
    naive = await tenant.get("/v1/contacts", updated_since="2026-01-01T00:00:00")
    assert naive.json()["error"]["fields"][0]["message"].startswith("needs a time zone")


async def test_a_nul_character_in_a_query_or_form_is_a_4xx(tenant, http):
    """PostgreSQL can neither store nor search for it: a 422, never a 500."""
    for query in ({"q": "a\x00b"}, {"tag": "a\x00"}, {"external_id": "x\x00"}):
        response = await tenant.http.get("/v1/contacts", params=query, headers=tenant.auth)
        assert response.status_code == 422, (query, response.text)
        assert "NUL" in response.json()["error"]["message"]
    customer = Customer(http)
    await customer.open("/dashboard/login")
    login = await http.post("/dashboard/login", data={"csrf_token": customer.csrf(),
                                                      "api_key": "cj_a\x00b_c"})
    assert login.status_code == 422, login.text


async def test_a_body_over_its_limit_is_refused_before_anything_reads_it(tenant, settings):
    """Without an API key too: FastAPI parses a JSON body before the key is checked."""
    strict = create_app(settings.model_copy(update={"max_request_bytes": 1000}))

    async def chunks():  # no Content-Length: the body is counted as it arrives
        yield b'{"name": "'
        for _ in range(10):
            yield b"a" * 500
        yield b'"}'

    async with strict.router.lifespan_context(strict):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=strict),
                                     base_url="http://testserver") as http:
            declared = await http.post("/v1/campaigns", content=b"{" + b" " * 2000 + b"}",
                                       headers={"content-type": "application/json"})
            streamed = await http.post("/v1/campaigns", content=chunks(),
                                       headers={"content-type": "application/json",
                                                **tenant.auth})
            small = await http.post("/v1/campaigns", json={"name": "x"})
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "too_large"
    assert small.status_code == 401  # under the limit, the key is checked as ever


async def test_a_customer_page_post_too_large_is_answered_with_a_page(tenant, http, mailbox,
                                                                      settings):
    """A browser shows the customer a page in their language, not the API's JSON."""
    campaign = await tenant.create_campaign(languages=["nl"], consents=[],
                                            collect=["email", "address"])
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign,
                                                 unique_email("large"))
    dutch = {"accept-language": "nl-NL,nl;q=0.9"}
    form = {**customer.hidden_fields(), "csrf_token": customer.csrf(),
            "email": enrolled["external_id"], "address_line1": "a" * (3 * 1024 * 1024)}
    field = await http.post(page, data=form, headers=dutch)
    whole = await http.post(page, content=b"a" * (settings.max_request_bytes + 1), headers={
        **dutch, "content-type": "application/x-www-form-urlencoded"})
    # The form parser refuses a field over 1 MB; the body limit, a body over it.
    for response, status in ((field, 400), (whole, 413)):
        assert response.status_code == status, response.text[:200]
        assert response.headers["content-type"].startswith("text/html")
        assert "Wat u verstuurde is te groot" in response.text
    assert (await tenant.journey(enrolled["journey_id"]))["stage"] == "opened"


@pytest.mark.parametrize("language, title", [("en", "What you sent is too large"),
                                             ("nl", "Wat u verstuurde is te groot"),
                                             ("de", "Was Sie gesendet haben, ist zu groß")])
async def test_a_dashboard_login_too_large_is_not_titled_as_a_customers_page(http, language,
                                                                           title):
    """The operator's page was titled "Your personal page", the customers' wording."""
    customer = Customer(http)
    await customer.open("/dashboard/login")
    refused = await http.post("/dashboard/login", data={
        "csrf_token": customer.csrf(), "api_key": "a" * (2 * 1024 * 1024)},
        headers={"accept-language": language})
    assert refused.status_code == 400 and refused.headers["content-type"].startswith("text/html")
    assert f"<title>{title}</title>" in refused.text


async def test_the_api_docs_load_nothing_from_another_site(http):
    """On an air-gapped installation a CDN is out of reach, and elsewhere it would learn who
    reads our docs: every asset of /docs is ours."""
    docs = await http.get("/docs")
    assert docs.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)""", docs.text)
    assert len(urls) >= 3 and not re.search(r"https?://|//", docs.text), docs.text
    for url in urls:
        assert (await http.get(url)).status_code == 200, url
    assert (await http.get("/redoc")).status_code == 404


async def test_messages_say_how_to_put_it_right(tenant):
    sms = await tenant.post("/v1/campaigns", {**CAMPAIGN, "channels": ["sms"]})
    [problem] = sms.json()["error"]["fields"]
    assert problem["field"] == "channels" and "channel_plan" in problem["message"], problem
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    unknown = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts",
                                {"contacts": [{"external_id": "nobody-yet"}]})
    [problem] = unknown.json()["error"]["fields"]
    assert problem == {"field": "contacts[0].email", "message": (
        "no contact with this external_id exists: give its email in this item to create it, "
        "or create it first with POST /v1/contacts (or an import) with its email address, "
        "then enrol it by external_id")}


async def test_a_value_not_in_its_form_is_told_what_the_form_is(tenant):
    """Pydantic quotes the regular expression ("should match pattern '^[a-z0-9]…'"), which
    tells a client's developer little and its users nothing."""
    contact = await tenant.ok("POST", "/v1/contacts", {
        "last_name": "Vorm", "contact_points": [{"kind": "email", "value": unique_email()}]}, 201)
    await tenant.ok("PUT", "/v1/message-policies/notice", {"category": "service"})
    for method, path, body, field, meaning in (
            ("POST", "/v1/purposes", {"key": "News Letter", "name": "News", "kind": "service"},
             "key", "lower-case letters, digits, - and _ only"),
            ("PUT", "/v1/message-policies/Promo", {"category": "service"}, "message_type",
             "lower-case letters, digits, - and _ only"),
            ("PUT", "/v1/branding", {"primary_colour": "blue"}, "primary_colour",
             "a colour written #RRGGBB"),
            ("POST", f"/v1/contacts/{contact['id']}/addresses", {
                "type": "home", "line1": "Main 1", "city": "Gouda", "country": "Netherlands"},
             "country", "a two-letter ISO country code"),
            # Shown in the inbox as "AcmeBank".
            ("PUT", "/v1/branding", {"email_from_name": "Acme\u202eknaB"}, "email_from_name",
             "must be one line of text"),
            # A line break would end the Subject header and start the mail's text with the rest.
            ("POST", "/v1/messages", {"contact_id": contact["id"], "message_type": "notice",
                                      "subject": "Part A\nPart B", "text": "Hello"},
             "subject", "must be one line"),
            ("POST", "/v1/messages", {"contact_id": contact["id"], "message_type": "notice",
                                      "channel": "sms", "subject": "Hi", "text": "Hello"},
             "channel", "Input should be 'email'"),
            # A mail with nothing to say.
            ("POST", "/v1/messages", {"contact_id": contact["id"], "message_type": "notice",
                                      "subject": "   ", "text": "Hello"},
             "subject", "must not be blank"),
            ("POST", "/v1/messages", {"contact_id": contact["id"], "message_type": "notice",
                                      "subject": "Hi", "text": " \n "},
             "text", "must not be blank")):
        response = await tenant.http.request(method, path, headers=tenant.auth, json=body)
        assert response.status_code == 422, (path, response.text)
        [error] = response.json()["error"]["fields"]
        assert error["field"] == field and error["message"].startswith(meaning), (path, error)


def test_the_schema_documents_what_routes_answer():
    """Clients generate their error handling from the schema: a 409 a route gives must be in
    it, and so must the header that marks a replayed create."""
    paths = create_app().openapi()["paths"]
    for path, method, status in [("/v1/campaigns", "post", "409"), ("/v1/messages", "post", "409"),
                                 ("/v1/campaigns", "post", "413"), ("/v1/contacts", "post", "413")]:
        assert status in paths[path][method]["responses"], (path, method, status)
    for path, statuses in [("/v1/campaigns", ["201"]), ("/v1/contacts", ["201"]),
                           ("/v1/campaigns/{campaign_id}/launch", ["200", "202"])]:
        route = paths[path]["post"]
        assert {"name": "Idempotency-Key", "in": "header"}.items() <= next(
            p for p in route["parameters"] if p["name"] == "Idempotency-Key").items(), path
        for status in statuses:
            assert "Idempotent-Replayed" in route["responses"][status]["headers"], (path, status)


# A status a route's own code answers with: raised, returned as an error, or set on its answer.
ANSWERED_STATUS = re.compile(r"(?:HTTPException\(|error_response\(|status_code = |status_code=)"
                             r"(?:status\.HTTP_)?(\d{3})")


async def test_every_status_a_route_answers_is_in_the_schema(app, http):
    """A client's generated code knows only what /openapi.json lists: a 202 for a cancel still
    on its way, a 409 for a resend the endpoint does not subscribe to, a 410 for a document of
    an anonymised contact were answered yet undocumented."""
    import inspect

    from fastapi.routing import APIRoute

    from tests.test_abuse import flat_routes

    paths = (await http.get("/openapi.json")).json()["paths"]
    assert "202" in paths["/v1/journeys/{journey_id}/cancel"]["post"]["responses"]
    assert "409" in paths["/v1/webhook-endpoints/{endpoint_id}/events/{event_id}/resend"][
        "post"]["responses"]
    assert "410" in paths["/v1/contacts/{contact_id}/gdpr-consent/documents/{document_id}"][
        "get"]["responses"]
    undocumented = []
    for route in flat_routes(app.routes):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        answered = set(ANSWERED_STATUS.findall(inspect.getsource(route.endpoint)))
        for method in route.methods:
            missing = answered - set(paths[route.path][method.lower()]["responses"])
            undocumented += [f"{method} {route.path}: {status}" for status in sorted(missing)]
    assert not undocumented, undocumented
