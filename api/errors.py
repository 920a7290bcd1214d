"""One structured error body for every 4xx: {"error": {"code", "message", "fields"}}."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from api.schemas import FieldError, field_path


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[FieldError] = []


class ErrorBody(BaseModel):
    error: ErrorDetail


# Documented on every route, so the OpenAPI schema tells clients the shape of each failure.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed request (e.g. not JSON)"},
    401: {"model": ErrorBody, "description": "Missing or invalid API key"},
    404: {"model": ErrorBody, "description": "Not found (or another client's)"},
    422: {"model": ErrorBody, "description": "Validation failed; `fields` names each field"},
}


def error_response(status: int, code: str, message: str, fields: list[FieldError] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message, fields=fields or []))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def pydantic_fields(errors: list[dict[str, Any]]) -> list[FieldError]:
    return [FieldError(field=field_path(e["loc"]), message=e["msg"]) for e in errors]


CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 413: "too_large", 422: "validation_error",
         429: "rate_limited"}


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
        return error_response(422, "validation_error", "request failed validation",
                              pydantic_fields(errors))

    @app.exception_handler(FieldProblems)
    async def _fields(request: Request, exc: FieldProblems) -> JSONResponse:
        return error_response(422, "validation_error", "request failed validation", exc.fields)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, CODES.get(exc.status_code, "error"), str(exc.detail),
                              headers=getattr(exc, "headers", None))
