"""Paper's short form of a personal link: `/l/<code>` for those who type instead of scanning."""

import re

import httpx

from api.main import create_app
from core.security import paper_code, paper_code_sha256
from tests.helpers import Customer, unique_email

SHORT = re.compile(r"^testserver/l/([0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-"
                   r"[0-9A-HJKMNP-TV-Z]{4})$")


def test_a_code_reads_the_same_however_it_is_typed():
    code = paper_code("secret", "owner", "contact_page:message-1")
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", code)
    assert not set(code) & set("ILOU")
    # Another step, another owner or another secret: another code.
    assert len({code, paper_code("secret", "owner", "contact_page:message-2"),
                paper_code("secret", "other", "contact_page:message-1"),
                paper_code("other", "owner", "contact_page:message-1")}) == 4
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert paper_code_sha256(typed) == paper_code_sha256(code) == paper_code_sha256(
        code.replace("-", ""))
    for wrong in ("", code[:-1], code + "7", code[:-1] + "U", code[:-1] + "*"):
        assert paper_code_sha256(wrong) is None, wrong


async def test_the_printed_code_leads_to_the_personal_page(tenant, http):
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    address = unique_email("paper")
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
                  )["results"]
    link = await tenant.ok("GET", f"/v1/contacts/{enrolled['contact_id']}/enrichment-link")
    found = SHORT.match(link["short_link"])
    assert found, link["short_link"]
    code = found.group(1)

    # Typed as people type it: lower case, spaces, an O for a zero.
    typed = code.lower().replace("-", " ").replace("0", "o")
    response = await http.get(f"/l/{typed}")
    assert response.status_code == 303
    # The redirect carries the link's token: no cache keeps it.
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["location"] == link["url"].removeprefix("http://testserver")
    customer = Customer(http)
    await customer.open(response.headers["location"])
    assert address in customer.page  # the running journey's page, pre-filled

    # Typed without its path, into the form the bare address shows.
    for path in ("/l", "/I"):
        form = await http.get(path)
        assert form.status_code == 200 and 'name="code"' in form.text, path
    assert (await http.get("/l", params={"code": code})).headers["location"] == \
        response.headers["location"]

    # The path capitalised by a phone, its l read as a 1 or (a plain bar in the letter's
    # type) as a capital I, the whole printed link pasted into the form, a full stop after the
    # code: all lead to the page.
    for typed in (f"/L/{code}", f"/1/{code}", f"/I/{code}", f"/i/{code}", f"/l/{code}.",
                  f"/l?code={link['short_link']}", f"/L?code=%20{code}.",
                  f"/I?code={code}"):
        assert (await http.get(typed)).headers.get("location") == \
            response.headers["location"], typed

    # A code off by one character finds nothing, and says so where it can be corrected.
    wrong = code[:-1] + ("X" if code[-1] != "X" else "Y")
    unknown = await http.get(f"/l/{wrong}")
    assert unknown.status_code == 404
    assert "We do not know this code" in unknown.text and f'value="{wrong}"' in unknown.text
    assert (await http.get("/l/not-a-code")).status_code == 404
    assert (await http.get("/l", params={"code": "x" * 5000})).status_code == 404


async def test_guessing_codes_is_rate_limited_per_ip(tenant, settings):
    """Misses count against the address (an IPv6 one by its /64); right codes do not, so
    people behind one address who type their own codes never lock each other out."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    address = unique_email("guess")
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
                  )["results"]
    link = await tenant.ok("GET", f"/v1/contacts/{enrolled['contact_id']}/enrichment-link")
    right = link["short_link"].rsplit("/", 1)[1]
    strict = create_app(settings.model_copy(update={"printed_code_misses_per_ip_per_minute": 3}))
    async with strict.router.lifespan_context(strict):
        def client(host: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(transport=httpx.ASGITransport(app=strict, client=(host, 1)),
                                     base_url="http://testserver")
        async with client("198.51.100.88") as http:
            found = [(await http.get(f"/l/{right}")).status_code for _ in range(8)]
            # Counted per minute: twice the limit and two more exceed it whichever minute
            # boundary the guesses straddle.
            statuses = [(await http.get(f"/l/AAAA-AAAA-AAA{n}")).status_code for n in range(4)]
            statuses += [(await http.get("/l", params={"code": f"BBBB-BBBB-BBB{n}"})).status_code
                         for n in range(4)]
            # The empty form is free: someone locked out of guessing can still read it.
            form = await http.get("/l")
        neighbours = []
        for n in range(8):  # one subscriber's /64, an address each
            async with client(f"2001:db8:1:2::{n + 1}") as http:
                neighbours.append((await http.get(f"/l/CCCC-CCCC-CCC{n}")).status_code)
    assert found == [303] * 8
    assert statuses[0] == 404 and statuses.count(429) >= 2, statuses
    assert form.status_code == 200
    assert neighbours.count(429) >= 2, neighbours
