"""The raw baselines' trivial workflow, and the bare worker process that runs it
(`python -m bench.raw`): what Temporal alone costs on this machine, without our code."""

import asyncio
from dataclasses import dataclass

from temporalio import workflow


@dataclass
class RawInput:
    index: int


@dataclass
class AnswerInput:
    value: str


@dataclass
class AnswerResult:
    value: str


@workflow.defn(name="BenchRaw")
class RawWorkflow:
    """Waits for one update and answers it at once: a Temporal round trip and nothing else."""

    def __init__(self) -> None:
        self.answered = False

    @workflow.run
    async def run(self, input: RawInput) -> None:
        await workflow.wait_condition(lambda: self.answered)

    @workflow.update
    def answer(self, input: AnswerInput) -> AnswerResult:
        self.answered = True
        return AnswerResult(input.value)


async def main() -> None:
    from temporalio.worker import Worker

    from core.settings import get_settings
    from core.temporal import connect

    settings = get_settings()
    client = await connect(settings)
    async with Worker(client, task_queue=settings.temporal_task_queue, workflows=[RawWorkflow]):
        await asyncio.Event().wait()


# Guarded: the workflow sandbox re-imports this module.
if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
