"""Files in a directory standing in for an SMS or print provider (dev and tests), read back by
/dev/outbox. A message's file name comes from its idempotency key, so a retry overwrites."""

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

# Outbox ids are what /dev/outbox puts in URLs: hex only, so no id can name a path elsewhere.
OUTBOX_ID = re.compile(r"[0-9a-f]{32}")


def outbox_id(idempotency_key: str) -> str:
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def journey_message_key(journey_id: object, step: str) -> str:
    """The idempotency key of a journey's message (invitation, reminder, code) at its step."""
    return f"{journey_id}/{step}"


def kyc_message_key(contact_id: object, step: str) -> str:
    """The idempotency key of a KYC profile's message to its contact at the profile's step."""
    return f"kyc/{contact_id}/{step}"


def write_atomically(path: Path, data: bytes) -> None:
    """Writes a file only its owner (the service's user) may read, in folders only it may
    list: identity documents, letters and texts to customers are personal, whatever the
    umask. A reader (the dev outbox) never sees half a file: written beside it, then renamed
    over it."""
    missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
    os.replace(partial, path)


def write_record(directory: Path, id: str, record: dict[str, Any]) -> None:
    write_atomically(directory / f"{id}.json", json.dumps(record, indent=2).encode())


def read_records(directory: Path) -> list[dict[str, Any]]:
    """Every record in the outbox, newest first (by its `sent_at`)."""
    if not directory.is_dir():
        return []
    records = [json.loads(p.read_text()) for p in directory.glob("*.json")]
    return sorted(records, key=lambda r: r["sent_at"], reverse=True)


def file_in_outbox(directory: Path, id: str, suffix: str) -> Path | None:
    """The outbox file of `id`, or None when the id is malformed or unknown."""
    if not OUTBOX_ID.fullmatch(id):
        return None
    path = directory / f"{id}{suffix}"
    return path if path.is_file() else None


def anonymise_records(directory: Path, idempotency_keys: Iterable[str],
                      personal: dict[str, Any]) -> None:
    """For an anonymised contact: each message's record keeps what went out when, with its
    `personal` fields overwritten; any other file of it (a letter's PDF) is deleted."""
    for key in idempotency_keys:
        id = outbox_id(key)
        for path in directory.glob(f"{id}.*"):
            if path.suffix != ".json":
                path.unlink()
        record = directory / f"{id}.json"
        if record.is_file():
            write_record(directory, id, {**json.loads(record.read_text()), **personal,
                                         "anonymised": True})
