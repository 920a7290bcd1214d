"""The bare FastAPI baseline: one route shaped like the contact page, doing nothing else."""

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

app = FastAPI()
PAGE = "<!doctype html><html><head><title>Contact page</title></head><body>{}</body></html>"


@app.get("/c/{token}", response_class=HTMLResponse)
async def contact_page(token: str) -> HTMLResponse:
    return HTMLResponse(PAGE.format(len(token)))
