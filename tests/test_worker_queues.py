"""A worker process polls the task queues WORKER_QUEUES gives it: docker-compose (and the bench)
run the campaign launches in a process apart from the journeys'."""

import uuid

import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from tests.helpers import eventually
from worker import running_worker


async def polled(client, queue: str) -> bool:
    described = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
    return bool(described.pollers)


@pytest.mark.parametrize("queues", ["all", "journeys", "launches"])
async def test_a_worker_process_polls_the_task_queues_it_is_given(temporal_env, settings, queues):
    own = settings.model_copy(update={"temporal_task_queue": f"queues-{uuid.uuid4().hex[:8]}",
                                      "worker_queues": queues})
    journeys, launches = own.temporal_task_queue, own.launch_task_queue
    expected = {"all": [journeys, launches], "journeys": [journeys],
                "launches": [launches]}[queues]
    client = temporal_env.client
    async with running_worker(client, own) as workers:
        assert [worker.task_queue for worker in workers] == expected
        for queue in expected:
            await eventually(lambda: polled(client, queue), timeout=10)
        # Both queues are new: a poller on the other one could only be this process's.
        assert [q for q in (journeys, launches) if await polled(client, q)] == expected
