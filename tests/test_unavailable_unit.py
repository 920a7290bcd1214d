"""Which failures the API answers with 503 + Retry-After (try again shortly) rather than 500;
the fault suite (tests/faults) shows them end to end with Temporal and PostgreSQL down."""

import pytest
from sqlalchemy import exc as sa
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import unavailable


@pytest.mark.parametrize(("error", "transient"), [
    (RPCError("server gone", RPCStatusCode.UNAVAILABLE, b""), True),
    (RPCError("slow", RPCStatusCode.DEADLINE_EXCEEDED, b""), True),
    (RPCError("context canceled", RPCStatusCode.CANCELLED, b""), True),
    (RPCError("update workflow execution operation failed", RPCStatusCode.INTERNAL, b""), True),
    (RPCError("conflict", RPCStatusCode.ABORTED, b""), True),
    (WorkflowUpdateRPCTimeoutOrCancelledError(), True),
    (sa.OperationalError("SELECT 1", {}, Exception("server closed the connection")), True),
    (sa.TimeoutError("pool exhausted"), True),
    (RPCError("no such workflow", RPCStatusCode.NOT_FOUND, b""), False),
    (RPCError("bad", RPCStatusCode.INVALID_ARGUMENT, b""), False),
    (sa.IntegrityError("INSERT", {}, Exception("duplicate key")), False),
    (ValueError("a bug"), False),
])
def test_only_an_unreachable_temporal_or_database_is_unavailable(error, transient):
    assert unavailable(error) is transient
