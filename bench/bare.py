"""The bare FastAPI baseline: routes shaped like ours, doing nothing else. The contact page; and
a form post answered by the raw workflow's update, i.e. the HTTP hop alone in front of a raw
Temporal update round trip."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse

from bench.raw import AnswerInput, RawWorkflow
from core.settings import get_settings
from core.temporal import connect


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.temporal = await connect(get_settings())
    yield


app = FastAPI(lifespan=lifespan)
PAGE = "<!doctype html><html><head><title>Contact page</title></head><body>{}</body></html>"


@app.get("/c/{token}", response_class=HTMLResponse)
async def contact_page(token: str) -> HTMLResponse:
    return HTMLResponse(PAGE.format(len(token)))


@app.post("/answer", response_class=HTMLResponse)
async def answer(request: Request, workflow_id: str = Form()) -> HTMLResponse:
    result = await request.app.state.temporal.get_workflow_handle(workflow_id).execute_update(
        RawWorkflow.answer, AnswerInput(workflow_id))
    return HTMLResponse(PAGE.format(result.value))
