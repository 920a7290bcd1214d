"""Replays every recorded journey history against today's workflow code."""

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from core.temporal import data_converter
from tests.histories import HERE
from worker import REPLAYED

HISTORIES = sorted(HERE.glob("*.json"))


def test_histories_are_recorded():
    assert HISTORIES, "no recorded histories: run pytest --record-histories"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replays_deterministically(path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await Replayer(workflows=REPLAYED, data_converter=data_converter).replay_workflow(
        history)
