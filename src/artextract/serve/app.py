"""`artextract serve`: the explorer as a Starlette application (plain HTML from Jinja2 templates that escape every
value, a few lines of JavaScript, no asset from elsewhere).

Starlette rather than FastAPI: the pages are HTML, not a typed JSON API, so FastAPI's pydantic models and OpenAPI
schema would be weight without use; uvicorn serves it. Every route takes integers or class names that are looked
up in the collection, never a path: the only files served are the collection's own images, from DATA's cache.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from artextract.analysis.label_issues import HEADLINE, ranking_column
from artextract.core.progress import log
from artextract.errors import ArtExtractError
from artextract.serve.collection import PAGE_SIZE, Collection, Query
from artextract.serve.label_issues import ISSUES_PAGE, IssueQuery

MAX_UPLOAD_MB = 50
THUMB_SIDE, IMAGE_SIDE = 160, 512


def create_app(collection: Collection, max_upload_mb: int = MAX_UPLOAD_MB) -> Any:
    from jinja2 import Environment, PackageLoader
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import HTMLResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from artextract.report.summary import generated_note

    templates = Environment(loader=PackageLoader("artextract.serve", "templates"), autoescape=True)
    model_lock = threading.Lock()  # one forward pass at a time: the model is not shared across threads safely
    generated = generated_note(collection.data.root)  # on every page of a collection of synth's stand-ins

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = templates.get_template(name).render(tasks=collection.tasks, run=collection.run.root.name,
                                                   audited=collection.issues is not None, generated=generated,
                                                   **context)
        return HTMLResponse(html, status_code=status)

    def painting_row(request: Request) -> int:
        row = int(request.path_params["row"])
        collection.row(row)  # KeyError -> 404
        return row

    async def grid(request: Request) -> Response:
        query = Query.parse(dict(request.query_params), collection.tasks)
        rows, total = collection.select(query)
        pages = max(1, -(-total // PAGE_SIZE))
        return page("collection.html.j2", query=query, rows=rows.to_dict("records"), total=total, pages=pages,
                    classes=collection.classes[query.task], params=dict(request.query_params))

    async def painting(request: Request) -> Response:
        from artextract.engine.explain import explanation_method

        row = painting_row(request)
        record = collection.row(row)
        tasks = []
        for task in collection.tasks:
            label = int(record[f"label_{task}"])
            scores = collection.outliers[(collection.outliers["task"] == task)
                                         & (collection.outliers["path"] == record["path"])] \
                if len(collection.outliers) else collection.outliers
            tasks.append({"name": task, "label": collection.classes[task][label] if label >= 0 else "",
                          "top": collection.top(row, task),
                          "outlier": scores.iloc[0].to_dict() if len(scores) else None})
        nearest = await asyncio.to_thread(collection.nearest, row, 8)
        return page("painting.html.j2", row=row, path=record["path"], split=record["split"], info=tasks,
                    nearest=nearest, explained_by=explanation_method(collection.predictor.model))

    async def image(request: Request) -> Response:
        row = painting_row(request)
        side = THUMB_SIDE if request.url.path.startswith("/thumb/") else IMAGE_SIDE
        data = await asyncio.to_thread(collection.jpeg, row, side)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def heatmap(request: Request) -> Response:
        row, task = painting_row(request), request.path_params["task"]
        if task not in collection.tasks:
            return PlainTextResponse(f"no task {task!r}", status_code=404)
        png = await asyncio.to_thread(collection.heatmap_png, row, task, model_lock)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    async def confusion(request: Request) -> Response:
        task = request.path_params["task"]
        if task not in collection.tasks:
            return PlainTextResponse(f"no task {task!r}", status_code=404)
        matrix = collection.metrics["tasks"][task]["confusion"]
        return page("confusion.html.j2", task=task, names=collection.classes[task], matrix=matrix)

    async def new_painting(request: Request) -> Response:
        if request.method == "GET":
            return page("new.html.j2", max_mb=max_upload_mb)
        try:
            data, error = await _read_upload(request, max_upload_mb)
        except ClientDisconnect:  # nobody is left to answer: one line in the log, not a traceback
            log.info("serve: a client left in the middle of its upload")
            return Response(status_code=400)
        if error:
            return page("new.html.j2", status=error[0], max_mb=max_upload_mb, error=error[1])
        result = await asyncio.to_thread(_classify_upload, collection, model_lock, data)
        if isinstance(result, str):
            return page("new.html.j2", status=422, max_mb=max_upload_mb, error=result)
        return page("new.html.j2", max_mb=max_upload_mb, result=result)

    async def label_issues(request: Request) -> Response:
        issues = collection.issues
        if issues is None:
            return page("issues.html.j2", status=404, missing=True)
        query = IssueQuery.parse(dict(request.query_params), issues.tasks)
        rows, total = issues.select(query)
        return page("issues.html.j2", query=query, rows=rows, total=total, pages=max(1, -(-total // ISSUES_PAGE)),
                    issue_tasks=issues.tasks, classes=issues.classes[query.task], record=issues.record,
                    ranking=ranking_column(issues.record.get("headline", HEADLINE)),
                    params=dict(request.query_params))

    async def audited_image(request: Request) -> Response:
        data = await asyncio.to_thread(collection.audited_jpeg, int(request.path_params["index"]), THUMB_SIDE)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def not_found(request: Request, exc: Exception) -> Response:
        return page("error.html.j2", status=404, message="There is no such page or painting here.")

    _register_row_convertor()
    routes = [Route("/", grid), Route("/painting/{row:row}", painting), Route("/thumb/{row:row}.jpg", image),
              Route("/image/{row:row}.jpg", image), Route("/heatmap/{row:row}/{task:str}.png", heatmap),
              Route("/confusion/{task:str}", confusion), Route("/new", new_painting, methods=["GET", "POST"]),
              Route("/issues", label_issues), Route("/audited/{index:row}.jpg", audited_image)]
    return Starlette(routes=routes, exception_handlers={404: not_found, KeyError: not_found})


def _register_row_convertor() -> None:
    """`{row:row}`: a row number of at most 12 digits. Starlette's `int` takes any number of digits and Python
    refuses to convert more than 4,300 (a 500 page); a longer number now matches no route: 404."""
    from starlette.convertors import IntegerConvertor, register_url_convertor

    class RowConvertor(IntegerConvertor):
        regex = "[0-9]{1,12}"

    register_url_convertor("row", RowConvertor())


async def _read_upload(request: Any, max_mb: int) -> tuple[bytes, tuple[int, str] | None]:
    """The uploaded file's bytes, or (status, message): refused unread when the request says it is too large."""
    limit = max_mb * 2**20
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():  # a chunked body of unknown size could fill the disk
        return b"", (411, "The upload must say its size (Content-Length); a browser's form always does.")
    if int(declared) > limit + 2**16:
        return b"", (413, f"The file is larger than the {max_mb} MB this server accepts.")
    form = await request.form(max_files=1, max_fields=4)
    upload = form.get("image")
    if upload is None or isinstance(upload, str):
        return b"", (400, "Choose an image file to upload.")
    data = await upload.read(limit + 1)
    await upload.close()  # Starlette spools large uploads to a temporary file; closing removes it
    if len(data) > limit:
        return b"", (413, f"The file is larger than the {max_mb} MB this server accepts.")
    if not data:
        return b"", (400, "The uploaded file is empty.")
    return data, None


# Decoding a 12 KB PNG of 100 megapixels takes over a GB for a moment (12 bytes a pixel for RGBA): one such decode
# at a time, and at most one decode per core.
_DECODE_SLOTS = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
_LARGE_DECODE, LARGE_PIXELS = threading.Lock(), 16_000_000


def decode_upload(data: bytes, size: int) -> tuple[Any, int, int]:
    """`prepare`'s hardened decoder (pixel limit, bombs refused) for an upload: (square, width, height). Peak memory
    is bounded by one large decode (the pixel limit x 12 bytes) plus one small one per other core; the freed
    memory is handed back to the system after each."""
    from artextract.config import DEFAULT_MAX_PIXELS
    from artextract.data.decode import declared_pixels, decode_square

    large = declared_pixels(data, DEFAULT_MAX_PIXELS) > LARGE_PIXELS
    with _LARGE_DECODE if large else contextlib.nullcontext(), _DECODE_SLOTS:
        try:
            return decode_square(data, size, DEFAULT_MAX_PIXELS)
        finally:
            _trim_heap()


def _trim_heap() -> None:
    """glibc keeps freed blocks of a large decode in the process (1.3 GB resident after four 100-megapixel
    uploads); malloc_trim returns them. Elsewhere nothing to do."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _classify_upload(collection: Collection, lock: threading.Lock, data: bytes) -> dict[str, Any] | str:
    """Predictions, a heat map per task and the nearest paintings of an uploaded image, or why it cannot be used.
    Decoded from memory by `prepare`'s hardened decoder (pixel limit, bombs refused); nothing is written."""
    from artextract.data.decode import SkipImage

    predictor = collection.predictor
    try:
        square, width, height = decode_upload(data, predictor.preprocessing.cache_size)
    except SkipImage as err:
        return f"This file cannot be used as an image: {err}."
    with lock:
        (result,) = predictor.similar(square, k=8, index=collection.index)
        heat = predictor.overlays(square)
    from artextract.engine.checkpoint import synthetic_warning
    from artextract.report.terminal import unknown_phrase

    # What `predict` says of the same image: its doubts, the open-set flag and the stand-in model's warning.
    notes = [note for note in (predictor.preprocessing.doubts(width, height),
                               unknown_phrase(result["unknown"]) if result.get("unknown") else None,
                               synthetic_warning("This model", "an image") if predictor.info.synthetic else None)
             if note]
    return {"width": width, "height": height, "notes": notes, "predictions": result["predictions"],
            "heatmaps": {task: "data:image/png;base64," + base64.b64encode(png).decode() for task, png in heat.items()},
            "similar": result["similar"]}


def serve(run: Path, data: Path | None, host: str, port: int, max_upload_mb: int = MAX_UPLOAD_MB,
          audit: Path | None = None) -> None:
    """Open the collection (and the label audit of its DATA, if given) and serve it until Ctrl-C."""
    import uvicorn

    _require_free_port(host, port)  # before the minutes of loading, not after
    collection = Collection.open(run, data, audit)
    log.info("serve: %d paintings of %s; building the similarity index if needed", len(collection.predictions),
             collection.evaluation.root)
    collection.index  # noqa: B018 (built before the first request, not during it)
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {run} at http://{shown}:{port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    uvicorn.run(create_app(collection, max_upload_mb), host=host, port=port, log_level="warning")


def _require_free_port(host: str, port: int) -> None:
    """Refuse, in one line, an address this process cannot listen on (a port in use, an address not of this
    machine). The probe binds as uvicorn will (SO_REUSEADDR), so a port in TIME_WAIT is not refused."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as err:
        raise ArtExtractError(f"cannot listen on {host}:{port} ({err.strerror or err}): another program may be "
                              "using the port; pass --port with another, or stop it") from None
