"""Letters need their font files: an installation without them says so when it starts, and an
API whose font went missing afterwards answers a branding's letter_sender with a JSON error in
the one error shape, not a bare text/plain 500."""

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from core.settings import Settings
from stack import free_port, settings_env, wait_for_port

ROOT = Path(__file__).parents[1]
# What the API subprocess gets to import its app and connect (seconds; a loaded CI machine).
STARTUP_SECONDS = 60


def test_settings_refuse_letter_fonts_that_are_not_there(tmp_path):
    for variable in ("letter_font_regular", "letter_font_bold"):
        with pytest.raises(ValidationError) as refused:
            Settings(**{variable: tmp_path / "DejaVuSans.ttf"})
        message = str(refused.value)
        assert f"{variable.upper()}: no readable font file at {tmp_path}/DejaVuSans.ttf" in message
        assert "fonts-dejavu-core" in message and "LETTER_FONT_BOLD" in message


async def test_a_font_gone_after_start_makes_letter_sender_a_json_error(settings, tenant, tmp_path):
    font = tmp_path / "DejaVuSans.ttf"
    shutil.copy(settings.letter_font_regular, font)
    port = free_port()
    env = {**settings_env(settings), "LETTER_FONT_REGULAR": str(font),
           "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    api = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
                            "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port("127.0.0.1", port, STARTUP_SECONDS, api)
        font.unlink()  # a volume unmounted, a package removed
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            answer = await http.put("/v1/branding", headers=tenant.auth, json={
                "primary_colour": "#1d4ed8", "letter_sender": "Acme BV · Postbus 1 · Amsterdam"})
            assert answer.status_code == 500, answer.text
            assert answer.headers["content-type"] == "application/json"
            error = answer.json()["error"]
            assert "LETTER_FONT_REGULAR" in error["message"], error
            assert "letter_sender" in error["message"], error
            # Without a letter_sender nothing needs the font: the rest of branding still works.
            kept = await http.put("/v1/branding", headers=tenant.auth,
                                  json={"primary_colour": "#1d4ed8"})
            assert kept.status_code == 200, kept.text
    finally:
        api.terminate()
        log = api.communicate(timeout=30)[0]
    # The operator's log names the file and the fix.
    assert f"LETTER_FONT_REGULAR ({font})" in log and "fonts-dejavu-core" in log, log
