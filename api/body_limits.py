"""Request bodies are cut off at their route's limit as they arrive, before anything reads one
whole: FastAPI parses a JSON body before it checks the API key, so without this anyone could
make the API hold gigabytes."""

from fastapi import HTTPException, Request, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response, for_browsers, too_large_page
from core.settings import Settings

# What a multipart form adds around the file it carries.
MULTIPART_SLACK = 64 * 1024


class BodyTooLarge(HTTPException):
    """Raised while the body is read: FastAPI passes an HTTPException on as it is, where it
    would turn any other error of a body's parsing into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE, f"at most {limit} bytes per request")


def limit_for(settings: Settings, path: str) -> int:
    if path == "/v1/contact-imports":
        return settings.max_import_bytes
    if path.startswith("/k/") or path.endswith("/documents"):  # KYC documents, by API and page
        return settings.kyc_max_document_bytes + MULTIPART_SLACK
    return settings.max_request_bytes


class BodyLimits:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(self.settings, scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            refusal, request = BodyTooLarge(limit), Request(scope)
            await (too_large_page(request, refusal.status_code) if for_browsers(request) else
                   error_response(refusal.status_code, "too_large", refusal.detail))(
                scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)
