"""One structured error body for every 4xx: {"error": {"code", "message", "fields"}}; and a
503 with Retry-After, never a raw 500, while Temporal or the database is briefly unreachable."""

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import exc as sa
from starlette.exceptions import HTTPException
from temporalio.client import RPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from api.schemas import PATTERN_MEANINGS, EnrolResponse, FieldError, field_path
from messaging.rendering import DEFAULT_LANGUAGE, render_page, supported_languages


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[FieldError] = []


class ErrorBody(BaseModel):
    error: ErrorDetail


class EnrolRefused(ErrorBody, EnrolResponse):
    """No item was acceptable: the structured error every 4xx carries, and the per-item results."""


def none_acceptable(response: EnrolResponse, *, items: str, code: str, message: str
                    ) -> JSONResponse:
    """The 422 of a batch in which no item was acceptable: its results as a 202 would have
    them, and each item's errors as fields named `items[index].field`."""
    def field(index: int, name: str) -> str:
        return f"{items}[{index}]" if name == "item" else f"{items}[{index}].{name}"
    rejection = EnrolRefused(**response.model_dump(), error=ErrorDetail(
        code=code, message=message, fields=[FieldError(field=field(r.index, e.field),
                                                       message=e.message)
                                            for r in response.results for e in r.errors]))
    return JSONResponse(rejection.model_dump(mode="json"), status_code=422)


# Documented on every route, so the OpenAPI schema tells clients the shape of each failure.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed request (e.g. not JSON)"},
    401: {"model": ErrorBody, "description": "Missing or invalid API key"},
    404: {"model": ErrorBody, "description": "Not found (or another client's)"},
    413: {"model": ErrorBody, "description": "The body is larger than the request takes"},
    415: {"model": ErrorBody, "description": "A body not sent as the type the request takes "
          "(JSON: Content-Type application/json)"},
    422: {"model": ErrorBody, "description": "Validation failed; `fields` names each field"},
    503: {"model": ErrorBody, "description": "Briefly unavailable (a restart): retry after "
          "`Retry-After` seconds"},
}
# Long enough for a restarted Temporal server or database to be back, short enough for a person.
RETRY_AFTER_SECONDS = 5
# A restarting server also answers "context canceled" (CANCELLED), ABORTED or INTERNAL for
# calls in flight; answering those with a page meant for a refusal lost a customer's submission.
_TRANSIENT_RPC = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED,
                  RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.CANCELLED,
                  RPCStatusCode.ABORTED, RPCStatusCode.INTERNAL, RPCStatusCode.UNKNOWN}


def error_response(status: int, code: str, message: str, fields: list[FieldError] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message, fields=fields or []))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


# How pydantic names an enum member a Literal allows: <ConsentSource.api: 'api'>.
_ENUM_MEMBER = re.compile(r"<\w+\.\w+: ('[^']*')>")


def pydantic_fields(errors: list[dict[str, Any]]) -> list[FieldError]:
    """Field errors as clients read them: allowed values as they send them, not as Python
    names them, a pattern by what it means, not as a regular expression, and our validators'
    messages without pydantic's "Value error, " before them."""
    return [FieldError(field=field_path(e["loc"]), message=_message(e)) for e in errors]


def item_errors(err: ValidationError) -> list[FieldError]:
    """The errors of one item of a batch, validated on its own: its fields named within it, and
    an item that is no object as `item` (`none_acceptable` names it `items[<index>]`)."""
    return [FieldError(field="item" if e.field == "body" else e.field, message=e.message)
            for e in pydantic_fields(err.errors())]


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "model_type":  # pydantic's message names our class
        return "must be an object"
    if error["type"] == "string_pattern_mismatch":
        return PATTERN_MEANINGS.get(error["ctx"]["pattern"], "is not in the form expected here")
    return _ENUM_MEMBER.sub(r"\1", error["msg"].removeprefix("Value error, "))


NUMERIC_VALUE_OUT_OF_RANGE = "22003"  # PostgreSQL's SQLSTATE

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 413: "too_large",
         415: "unsupported_media_type", 422: "validation_error",
         429: "rate_limited"}


def unavailable(err: BaseException) -> bool:
    """Whether the error means Temporal or the database cannot be reached right now (a
    restart, a failover), as opposed to a refusal that retrying would not change."""
    if isinstance(err, RPCError):
        return err.status in _TRANSIENT_RPC
    if isinstance(err, sa.DBAPIError):
        return err.connection_invalidated or isinstance(err, (sa.OperationalError,
                                                              sa.InterfaceError))
    if isinstance(err, RuntimeError):
        # How the SDK's bridge says that a client which has never reached Temporal (the API
        # started while it was down) cannot reach it yet.
        return str(err).startswith("Failed client connect")
    return isinstance(err, (RPCTimeoutOrCancelledError, sa.TimeoutError))


class UpdateLost(Exception):
    """A customer's request to a running journey that the Temporal server lost before the
    workflow took it (a restart clears its update registry): answered as unavailable, so the
    customer sends it again."""


def raise_if_unavailable(err: BaseException) -> None:
    """For handlers that answer a refused update with a page: an unreachable Temporal is not
    a refusal, and goes on to the 503 handler."""
    if unavailable(err):
        raise err


def json_type(request: Request) -> bool:
    """Whether the request says its body is JSON (application/json or a +json type)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def browser_language(request: Request) -> str:
    """The language of a page shown without a visit's own (an invalid link, an error): the one
    the browser prefers most (by its q-values) among those our pages speak, else English."""
    ranked = []
    for order, entry in enumerate(request.headers.get("accept-language", "").split(",")):
        tag, *params = entry.strip().split(";")
        weight = 1.0
        for param in params:
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        ranked.append((-weight, order, tag.strip()))
    for weight, _, tag in sorted(ranked):
        language = tag.lower().split("-")[0]
        if weight < 0 and language in supported_languages():  # q=0: not this one
            return language
    return DEFAULT_LANGUAGE


def for_browsers(request: Request) -> bool:
    """Whether the route is a page (the customer's, the dashboard), not the API: its errors are
    pages in the visitor's language."""
    # However many slashes lead (a client's base URL ending in one, `//v1/...`), an API path
    # gets the API's JSON errors, which the client's error handling reads.
    path = "/" + request.url.path.lstrip("/")
    return not (path == "/v1" or path.startswith("/v1/"))


def error_page(request: Request, stage: str, status: int,
               headers: dict[str, str] | None = None) -> HTMLResponse:
    page = render_page("finished", browser_language(request), {"stage": stage, "client_name": ""})
    return HTMLResponse(page, status_code=status, headers=headers)


def unavailable_response(request: Request) -> Response:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if not for_browsers(request):
        return error_response(503, "unavailable", "the service is briefly unavailable; nothing "
                              "was lost, retry after Retry-After seconds", headers=headers)
    # Customers get a page in their language that tells them to try again.
    return error_page(request, "unavailable", 503, headers)


def too_large_page(request: Request, status: int) -> HTMLResponse:
    """A posted page over its body limit (413), or over the form parser's limit on a field's
    size or the number of fields (400): the customer typed or attached too much."""
    return error_page(request, "too_large", status)


class FieldProblems(Exception):
    """Validation that needs the database (unknown purpose, ...): a 422 naming the fields."""

    def __init__(self, fields: list[FieldError]) -> None:
        super().__init__("; ".join(f"{f.field}: {f.message}" for f in fields))
        self.fields = fields


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "malformed_json", "request body is not valid JSON")
        if not json_type(request) and any(tuple(e["loc"]) == ("body",) and e["type"] in (
                "model_attributes_type", "dict_type") for e in errors):
            # A JSON object sent as text/plain (curl -d) or without a type is not read as
            # JSON: saying the body is no object would send the client the wrong way.
            return error_response(415, "unsupported_media_type", "send the body as JSON, with "
                                  "Content-Type: application/json")
        return error_response(422, "validation_error", "request failed validation",
                              pydantic_fields(errors))

    @app.exception_handler(FieldProblems)
    async def _fields(request: Request, exc: FieldProblems) -> JSONResponse:
        return error_response(422, "validation_error", "request failed validation", exc.fields)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400 and json_type(request) and not for_browsers(request) and \
                exc.detail == "There was an error parsing the body":
            # What the framework raises for JSON it cannot decode (not UTF-8, as JSON must be).
            return error_response(400, "malformed_json", "request body is not valid JSON (JSON "
                                  "is UTF-8, whatever charset the Content-Type names)")
        # On a page only the framework raises these: a form or body over its limit.
        if exc.status_code in (400, 413) and for_browsers(request):
            return too_large_page(request, exc.status_code)
        # A link mistyped or cut short (a page's path with more or less after the token, or a
        # form posted to one): the customer reads why in their language, not the API's JSON.
        if exc.status_code in (404, 405) and for_browsers(request):
            return HTMLResponse(render_page("link_invalid", browser_language(request), {}),
                                status_code=exc.status_code, headers=exc.headers)
        return error_response(exc.status_code, CODES.get(exc.status_code, "error"), str(exc.detail),
                              headers=getattr(exc, "headers", None))

    async def _unavailable(request: Request, exc: Exception) -> Response:
        if not unavailable(exc):
            raise exc  # a real fault: the server error handler logs it and answers 500
        logging.getLogger("api").warning("%s %s: 503, %s: %s", request.method, request.url.path,
                                         type(exc).__name__, exc)
        return unavailable_response(request)

    for error in (RPCError, RPCTimeoutOrCancelledError, sa.DBAPIError, sa.TimeoutError,
                  RuntimeError):
        app.add_exception_handler(error, _unavailable)

    @app.exception_handler(UpdateLost)
    async def _lost(request: Request, exc: UpdateLost) -> Response:
        logging.getLogger("api").warning("%s %s: 503, update lost: %s", request.method,
                                         request.url.path, exc.__cause__ or exc)
        return unavailable_response(request)

    @app.exception_handler(sa.DataError)
    async def _data(request: Request, exc: sa.DataError) -> Response:
        if "NUL" in str(exc.orig):
            # PostgreSQL can neither store nor search for it. Bodies refuse it field by field
            # (api.schemas.Strict); a query parameter or form value ends up here.
            return error_response(422, "validation_error",
                                  "a value contains the NUL character, which cannot be used")
        if getattr(exc.orig, "sqlstate", None) == NUMERIC_VALUE_OUT_OF_RANGE:
            # Where a route leaves a number's range to the column (routes bound their own).
            return error_response(422, "validation_error",
                                  "a number in the request is larger than can be stored")
        return await _unavailable(request, exc)
