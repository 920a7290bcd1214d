"""The `journeys` command as an operator runs it: a client's API keys added, listed, revoked."""

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

JOURNEYS = Path(sys.executable).parent / "journeys"
ROOT = Path(__file__).parents[1]


async def journeys(database_url: str, *args: str) -> subprocess.CompletedProcess:
    # The code of this checkout, also where the installed command comes from another one.
    env = {**os.environ, "DATABASE_URL": database_url,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return await asyncio.to_thread(subprocess.run, [str(JOURNEYS), "clients", *args], env=env,
                                   capture_output=True, text=True, timeout=60)


async def test_a_key_is_replaced_and_the_old_one_revoked(tenant, http, database_url):
    added = await journeys(database_url, "add-key", str(tenant.id), "--name", "crm")
    assert added.returncode == 0, added.stderr
    new_key = re.search(r"api_key:\s+(\S+)", added.stdout).group(1)
    listed = (await journeys(database_url, "keys", str(tenant.id))).stdout.splitlines()
    assert [line.split()[1] for line in listed] == ["default", "crm"]
    assert all(line.endswith("active") for line in listed)

    old_head = listed[0].split()[0]
    # A dashboard link the old key made, and one the new key made.
    old_link, new_link = [
        (await http.post("/v1/dashboard-links", headers=auth)).json()["url"].removeprefix(
            "http://testserver")
        for auth in (tenant.auth, {"Authorization": f"Bearer {new_key}"})]
    assert (await http.get(old_link)).status_code == 200
    revoked = await journeys(database_url, "revoke-key", old_head)
    assert revoked.returncode == 0 and f"revoked {old_head}" in revoked.stdout
    assert (await http.get("/v1/campaigns", headers=tenant.auth)).status_code == 401
    # A leaked key's dashboard links close with it; the other key's stay open.
    assert (await http.get(old_link)).status_code == 404
    assert (await http.get(new_link)).status_code == 200
    new_auth = {"Authorization": f"Bearer {new_key}"}
    assert (await http.get("/v1/campaigns", headers=new_auth)).status_code == 200
    assert "revoked" in (await journeys(database_url, "keys", str(tenant.id))).stdout
    again = await journeys(database_url, "revoke-key", old_head)
    assert again.returncode == 1 and "no active key" in again.stderr
    unknown = await journeys(database_url, "add-key", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 1


async def test_a_client_name_too_long_for_its_sms_is_refused(database_url):
    """Outside the GSM-7 alphabet, a long name would push every invitation by SMS over the
    segment limit, found only as each one is skipped when sent: it is refused when given."""
    refused = await journeys(database_url, "create", "Łódzka Spółdzielnia " * 8)
    assert refused.returncode == 2 and "NAME" in refused.stderr, refused.stderr
    assert "UCS-2 segments" in refused.stderr and "at most 4" in refused.stderr
    for fits in ("Łódzka Spółdzielnia", ("Bakkerij de Gouden Korenaar " * 8)[:200]):
        created = await journeys(database_url, "create", fits)
        assert created.returncode == 0, created.stderr


async def test_a_blank_client_name_is_refused(database_url):
    """It would stand before every subject line: "Subject: : please confirm ..."."""
    for blank in ("", "   "):
        refused = await journeys(database_url, "create", blank)
        assert refused.returncode == 2 and "must not be blank" in refused.stderr, refused.stderr


async def test_a_client_name_of_two_lines_or_an_unknown_language_is_refused(database_url):
    """A line break in the name would cut every subject; a control character stop every mail."""
    for name in ("Acme\nBank", "Acme\rNote: x", "Acme\u202eknaB"):
        refused = await journeys(database_url, "create", name)
        assert refused.returncode == 2 and "one line" in refused.stderr, refused.stderr
    refused = await journeys(database_url, "create", "Acme", "--language", "xx")
    assert refused.returncode == 2 and "--language" in refused.stderr, refused.stderr


async def test_a_malformed_or_unknown_client_id_is_told_without_a_traceback(tenant, database_url):
    for args in (("keys", "not-a-uuid"), ("add-key", "zzz")):
        refused = await journeys(database_url, *args)
        assert refused.returncode == 2, refused
        assert "Traceback" not in refused.stderr and "CLIENT_ID" in refused.stderr, refused.stderr
    unknown = await journeys(database_url, "keys", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 1 and "no client" in unknown.stderr, unknown
    assert unknown.stdout == ""


async def test_clients_are_listed_with_their_active_keys(tenant, database_url):
    added = await journeys(database_url, "add-key", str(tenant.id), "--name", "crm")
    head = (await journeys(database_url, "keys", str(tenant.id))).stdout.split()[0]
    assert (await journeys(database_url, "revoke-key", head)).returncode == 0, added.stderr
    listed = await journeys(database_url, "list")
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(str(tenant.id))]
    assert line.endswith("  1 active key"), line
    assert f"  {tenant.name}  created " in line, line
