"""Schemathesis against the API's own OpenAPI schema: no request, however odd, gets a 5xx or an
undocumented answer, and every 4xx carries the one structured error body."""

import asyncio
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode
from temporalio.testing import WorkflowEnvironment

from core.vocabulary import CLIENT_ID
from tests.helpers import Tenant
from tests.real_ids import ID_SOURCES, SHARED_NAMES

# Not negative_data_rejection: pydantic's lax mode accepts e.g. 5 for "5" or a Unix time for a
# datetime by design; what matters here is that nothing fails or answers off the schema.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
# Per operation and kind of input. No per-example deadline: how long the stack takes (a slow
# dev server, a retried activity) is not what this test looks for, and each request waits at
# most 30 s below.
FUZZ = settings(max_examples=15, deadline=None, database=None, derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))


def as_httpx(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Schemathesis speaks `requests`; our client is httpx on the app's own event loop."""
    out = {k: kwargs[k] for k in ("method", "url", "params", "json", "headers") if k in kwargs}
    if "data" in kwargs:
        out["content" if isinstance(kwargs["data"], (bytes, str)) else "data"] = kwargs["data"]
    return out


def assert_structured_error(response: httpx.Response) -> None:
    if 400 <= response.status_code < 500:
        error = response.json().get("error")
        assert isinstance(error, dict) and {"code", "message", "fields"} <= set(error), (
            f"{response.request.method} {response.request.url} -> {response.status_code} "
            f"without the structured error body: {response.text[:300]}")


async def test_fuzzed_requests_never_get_a_5xx_or_an_unstructured_4xx(
    app, http: httpx.AsyncClient, tenant: Tenant, temporal_env: WorkflowEnvironment, mailbox
):
    schema = schemathesis.openapi.from_dict(app.openapi())
    # Real ids of this tenant, so generated requests also reach past the lookups.
    real_ids = {name: await source(tenant) for name, source in ID_SOURCES.items()}
    real_ids.update(SHARED_NAMES)
    loop = asyncio.get_running_loop()
    seen: dict[int, int] = {}

    def fuzz(operation, mode: GenerationMode, path_parameters: dict[str, str] | None) -> None:
        @FUZZ
        # Always the tenant's own key: generated Authorization headers would only test the 401.
        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters,
                                          headers=tenant.auth))
        def one(case) -> None:
            kwargs = as_httpx(case.as_transport_kwargs(base_url="http://testserver"))
            response = asyncio.run_coroutine_threadsafe(http.request(**kwargs), loop).result(30)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            case.validate_response(response, checks=CHECKS)
            assert_structured_error(response)
        one()

    def run_all() -> None:
        for result in schema.get_all_operations():
            operation = result.ok()
            names = {p.name for p in operation.path_parameters}
            fuzz(operation, GenerationMode.POSITIVE, None)
            if names or len(operation.query) or len(operation.body):  # anything to break
                fuzz(operation, GenerationMode.NEGATIVE, None)
            if names and names <= real_ids.keys():
                fuzz(operation, GenerationMode.POSITIVE, {n: real_ids[n] for n in names})

    try:
        # Hypothesis drives synchronously in a thread; requests run on the app's event loop.
        await asyncio.to_thread(run_all)
    finally:
        # Journeys the fuzzer enrolled must not keep the shared worker busy for later tests.
        async for wf in temporal_env.client.list_workflows(
                f'{CLIENT_ID.name} = "{tenant.id}" AND ExecutionStatus = "Running"'):
            await temporal_env.client.get_workflow_handle(wf.id).terminate("fuzzing is over")
    assert not any(status >= 500 for status in seen), seen
    assert any(200 <= status < 300 for status in seen), f"nothing got through: {seen}"
