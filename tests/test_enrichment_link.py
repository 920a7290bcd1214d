"""The "complete your data" link a client prints on any other message (letter, invoice, ...)."""

import subprocess

from tests.helpers import Customer, unique_email


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
