"""Recorded journey histories, replayed in CI so a non-deterministic workflow change fails.

Record them anew with `pytest --record-histories` after a deliberate, patched change."""

from pathlib import Path

from temporalio.client import WorkflowHandle

HERE = Path(__file__).parent


async def save_history(handle: WorkflowHandle, name: str) -> None:
    history = await handle.fetch_history()
    (HERE / f"{name}.json").write_text(history.to_json())
