"""The `journeys` command as an operator runs it: a client's API keys added, listed, revoked."""

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from stack import free_port

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


async def test_a_client_name_the_letter_font_cannot_print_is_refused(database_url):
    """Its letters would go out with a blank letterhead and signature, without a word: the
    characters are named when the name is given. Greek and Cyrillic print, as names do."""
    refused = await journeys(database_url, "create", "アクメ株式会社")
    said = " ".join(refused.stderr.replace("│", " ").split())  # as the box wraps it
    assert refused.returncode == 2 and "NAME" in said, refused.stderr
    assert "letter's font cannot print: アクメ株式会社" in said, refused.stderr
    assert "blank letterhead and signature" in said
    for prints in ("Ακμή Ενέργεια", "Акме Энергия"):
        created = await journeys(database_url, "create", prints)
        assert created.returncode == 0, created.stderr


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


async def journeys_in(cwd: Path, *args: str, **variables: str) -> subprocess.CompletedProcess:
    """As a newcomer runs it from a new terminal: no DATABASE_URL, in some directory."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env |= {"PYTHONPATH": str(ROOT), **variables}
    return await asyncio.to_thread(subprocess.run, [str(JOURNEYS), *args], cwd=cwd, env=env,
                                   capture_output=True, text=True, timeout=60)


async def test_run_away_from_the_stack_it_names_the_database_and_the_fix(tmp_path):
    """A new terminal opens in ~, not where `make run` keeps .data/: one line, no traceback."""
    away = await journeys_in(tmp_path, "clients", "create", "Acme")
    assert away.returncode == 1 and "Traceback" not in away.stderr, away.stderr
    [line] = away.stderr.splitlines()
    assert f"no database at {tmp_path}/.data/journeys.db" in line, line
    assert "`make run` runs in" in line and "DATABASE_URL" in line, line
    assert not (tmp_path / ".data").exists()  # no empty database left behind

    (tmp_path / ".data").mkdir()
    (tmp_path / ".data" / "journeys.db").touch()  # there, but never migrated
    unmigrated = await journeys_in(tmp_path, "clients", "list")
    assert unmigrated.returncode == 1 and len(unmigrated.stderr.splitlines()) == 1, unmigrated
    assert "no such table: clients" in unmigrated.stderr
    assert "`journeys db upgrade`" in unmigrated.stderr

    down = f"postgresql+psycopg://journeys:s3cret@127.0.0.1:{free_port()}/journeys"
    unreachable = await journeys_in(tmp_path, "clients", "list", DATABASE_URL=down)
    assert unreachable.returncode == 1 and len(unreachable.stderr.splitlines()) == 1, unreachable
    assert "journeys:***@127.0.0.1:" in unreachable.stderr and "s3cret" not in unreachable.stderr
    assert "server is up" in unreachable.stderr


async def test_a_refused_setting_is_one_line_naming_its_variable(tmp_path, database_url):
    refused = await journeys_in(tmp_path, "clients", "list", DATABASE_URL=database_url,
                                PREFERENCE_LINK_TTL="-P1D", FORM_POSTS_PER_IP_PER_MINUTE="0",
                                LETTER_FONT_BOLD=str(tmp_path / "DejaVuSans-Bold.ttf"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    lines = sorted(refused.stderr.splitlines())
    assert [line.split(":")[0] for line in lines] == [
        "FORM_POSTS_PER_IP_PER_MINUTE", "LETTER_FONT_BOLD", "PREFERENCE_LINK_TTL"], lines
    assert "fonts-dejavu-core" in lines[1] and "greater than 0" in lines[2], lines


async def test_a_leaked_key_is_revoked_as_pasted_and_its_audit_trail_found(tenant, http,
                                                                           database_url):
    """An operator holds the leaked key itself: revoking it as pasted works, and the key's id
    that `keys` shows finds what it did in the audit trail (the actor it names)."""
    contact = (await http.post("/v1/contacts", headers=tenant.auth,
                               json={"last_name": "Leaked"})).json()
    listed = (await journeys(database_url, "keys", str(tenant.id))).stdout
    [key_id] = re.findall(r"  id ([0-9a-f-]{36})  ", listed)
    trail = await http.get("/v1/audit", headers=tenant.auth,
                           params={"actor_type": "api_key", "actor_id": key_id})
    assert contact["id"] in {e["contact_id"] for e in trail.json()["items"]}, trail.text

    revoked = await journeys(database_url, "revoke-key", f"  {tenant.key}\n")
    assert revoked.returncode == 0, revoked.stderr
    assert (await http.get("/v1/campaigns", headers=tenant.auth)).status_code == 401
    head = tenant.key.split("_")[1]
    assert f"revoked {head}" in revoked.stdout and tenant.key not in revoked.stdout
    # Not told as if it were unknown, nor as if nothing had been done to it.
    again = await journeys(database_url, "revoke-key", f"cj_{head}")
    assert again.returncode == 1 and f"no active key {head}: revoked 20" in again.stderr
    unknown = await journeys(database_url, "revoke-key", "0123456789abcdef")
    assert unknown.returncode == 1 and "no key 0123456789abcdef" in unknown.stderr


async def test_a_key_name_the_listing_cannot_show_is_refused(tenant, database_url):
    for name in ("x" * 201, "   ", "crm\nbilling"):
        refused = await journeys(database_url, "add-key", str(tenant.id), "--name", name)
        assert refused.returncode == 2 and "--name" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    fits = await journeys(database_url, "add-key", str(tenant.id), "--name", "x" * 200)
    assert fits.returncode == 0, fits.stderr


async def test_keys_show_whether_each_is_still_in_use(tenant, http, database_url):
    """Before revoking the old key of a replacement, an operator sees whether the client's
    systems still send it."""
    added = await journeys(database_url, "add-key", str(tenant.id), "--name", "crm")
    new_key = re.search(r"api_key:\s+(\S+)", added.stdout).group(1)
    assert (await http.get("/v1/campaigns", headers=tenant.auth)).status_code == 200
    old, new = (await journeys(database_url, "keys", str(tenant.id))).stdout.splitlines()
    assert re.search(r"  last used 20\d\d-\d\d-\d\d \d\d:\d\d  active$", old), old
    assert new.endswith("  never used  active"), new
    assert (await http.get("/v1/campaigns",
                           headers={"Authorization": f"Bearer {new_key}"})).status_code == 200
    [_, new] = (await journeys(database_url, "keys", str(tenant.id))).stdout.splitlines()
    assert "  last used 20" in new, new
