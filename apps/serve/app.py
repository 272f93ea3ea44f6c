"""The FastAPI application of ``hcm serve``: routes, templates, error pages.

    GET  /runs                the runs table (``hcm runs``), sortable, filtered by dataset, reading, study
    GET  /runs/<dataset>/<run> a run: the report's content and the per-sample table with clips
    GET  /explain             one cached item explained (``hcm explain``), its clip playing
    GET  /compare             two or more runs side by side
    GET  /predict, POST       upload a clip with its transcript, pick a run, get the prediction
    GET  /studies             the ``hcm tune`` studies
    GET  /files/<path>        a file from inside the workspace (clips, pictures)

Pages that read files run on the server's thread pool; model work on the models' own worker
(``hcm.apps.serve.models``). Every failure becomes a page that says what went wrong.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from hcm import __version__
from hcm.apps.predict_inputs import split_utterances
from hcm.apps.report import cell, metric_rows
from hcm.apps.serve.limits import BodyLimit
from hcm.apps.serve.models import Models
from hcm.apps.serve.pages import SAMPLE_COLUMNS, Pages, UnknownRun
from hcm.apps.serve.security import FileRefused, Guard, workspace_file
from hcm.apps.serve.settings import ServeSettings
from hcm.apps.serve.uploads import UploadRefused, probe_upload, save_upload
from hcm.core.errors import HcmError, UsageError
from hcm.pipeline.clip import ClipInput

HERE = Path(__file__).parent
SPLITS = ("test", "valid", "train")
log = logging.getLogger(__name__)


def create_app(settings: ServeSettings) -> FastAPI:
    """The application for ``settings`` (its workspace, token, upload limit)."""
    templates = Jinja2Templates(env=Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True))
    templates.env.globals.update(cell=cell, metric_rows=metric_rows, version=__version__,
                                 workspace=str(settings.workspace.root), sample_columns=SAMPLE_COLUMNS)
    pages = Pages(settings.workspace)
    models = Models(settings.workspace, settings.device)
    uploads = Path(tempfile.mkdtemp(prefix="hcm-serve-uploads-"))

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        models.close()
        shutil.rmtree(uploads, ignore_errors=True)

    app = FastAPI(title="hcm serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings, app.state.pages, app.state.models, app.state.uploads = settings, pages, models, uploads

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context, status_code=status)

    def error_page(request: Request, status: int, message: str) -> HTMLResponse:
        return page(request, "error.html.j2", status, title=f"error {status}", message=message)

    def limit_page(error: HTTPException) -> Response:
        return HTMLResponse(templates.get_template("error.html.j2").render(
            title="upload refused", message=error.detail, request=None), status_code=error.status_code)

    @app.exception_handler(UnknownRun)
    async def unknown_run(request: Request, error: UnknownRun) -> HTMLResponse:
        return error_page(request, 404, str(error))

    @app.exception_handler(FileRefused)
    async def refused_file(request: Request, error: FileRefused) -> HTMLResponse:
        return error_page(request, 404, f"not served: {error}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> HTMLResponse:
        return error_page(request, error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def failure(request: Request, error: Exception) -> HTMLResponse:
        log.exception("page %s failed", request.url.path)
        return error_page(request, 500, f"this page failed: {type(error).__name__}: {error}")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/runs", status_code=303)

    @app.get("/runs", response_class=HTMLResponse)
    def runs(request: Request, dataset: str = "", reading: str = "", study: str = "", sort: str = "run",
             desc: bool = False) -> HTMLResponse:
        table = pages.runs_table(dataset, reading, study, sort, desc)
        return page(request, "runs.html.j2", title="runs", table=table, sort=sort, desc=desc,
                    filters={"dataset": dataset, "reading": reading, "study": study})

    @app.get("/runs/{key:path}", response_class=HTMLResponse)
    def run(request: Request, key: str, split: str = Query("test", pattern="^(test|valid|train)$"),
            sort: str = "error", desc: bool = True, limit: int = Query(200, ge=1)) -> HTMLResponse:
        if sort not in dict(SAMPLE_COLUMNS):
            sort = "error"
        found = pages.run_page(key, split, sort, desc)
        return page(request, "run.html.j2", title=f"run {found.report.name}", run=found, split=split, sort=sort,
                    desc=desc, limit=limit, splits=SPLITS)

    @app.get("/explain", response_class=HTMLResponse)
    async def explain(request: Request, run: str, id: str,
                      split: str = Query("test", pattern="^(test|valid|train)$")) -> HTMLResponse:
        run_dir = pages.run_dir(run)
        try:
            explained = models.kept(run_dir, split, id) or await models.run(models.explain_cached, run_dir, split, id)
        except UsageError as error:  # no such item in the split
            return error_page(request, 404, f"cannot explain {id!r}: {error}")
        except (HcmError, KeyError, RuntimeError) as error:  # the run's cache or checkpoint cannot be read
            return error_page(request, 500, f"cannot explain {id!r}: {error}")
        dataset = explained.doc.get("dataset", "")
        clip = await run_in_threadpool(lambda: pages.clip_index.clips(dataset).get(id))
        return page(request, "explain.html.j2", title=f"explain {id}", run_key=run, split=split,
                    explained=explained, clip=clip)

    @app.get("/compare", response_class=HTMLResponse)
    def compare(request: Request, run: list[str] = Query(default=[]),
                split: str = Query("test", pattern="^(test|valid|train)$")) -> HTMLResponse:
        chosen = list(dict.fromkeys(run))
        if len(chosen) < 2:
            return page(request, "compare.html.j2", 400, title="compare", comparison=None, chosen=chosen,
                        message="choose two or more runs on the runs page (the boxes in the first column)")
        return page(request, "compare.html.j2", title="compare", comparison=pages.compare(chosen, split),
                    chosen=chosen, message=None, split=split)

    def predict_form(request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        table = pages.runs_table()
        keys = [row["key"] for row in table["rows"]]
        fields = {"run": keys[-1] if keys else "", "text": "", "context_before": "", "context_after": "",
                  "explain": True} | context.pop("fields", {})
        return page(request, "predict.html.j2", status, title="predict", runs=table["rows"], fields=fields,
                    max_mb=settings.max_upload_mb, result=context.pop("result", None),
                    error=context.pop("error", None), clip_name=context.pop("clip_name", None))

    @app.get("/predict", response_class=HTMLResponse)
    def predict_page(request: Request) -> HTMLResponse:
        return predict_form(request)

    @app.post("/predict", response_class=HTMLResponse)
    async def predict(request: Request, clip: UploadFile | None = File(None), text: str = Form(""),
                      context_before: str = Form(""), context_after: str = Form(""), run: str = Form(""),
                      explain: bool = Form(False)) -> HTMLResponse:
        fields = {"run": run, "text": text, "context_before": context_before, "context_after": context_after,
                  "explain": explain}
        name = Path(clip.filename or "clip").name if clip is not None else "clip"
        try:
            run_dir = pages.run_dir(run)
            if clip is None or not clip.filename:
                raise UploadRefused("choose a clip file to upload")
            path = await save_upload(clip, uploads, settings.max_upload_bytes)
            try:
                await probe_upload(path, settings.probe_seconds, name)
                given = ClipInput(path, text.strip() or None, split_utterances(context_before),
                                  split_utterances(context_after))
                result = await models.run(models.predict_clip, run_dir, given, explain, name)
            finally:
                path.unlink(missing_ok=True)
        except (UploadRefused, UnknownRun, HcmError) as refused:
            status, message = 400, str(refused)
        except Exception as failed:  # noqa: BLE001 - a failing prediction is a message on the page
            log.exception("prediction on %s failed", name)
            status, message = 500, f"the prediction failed: {type(failed).__name__}: {failed}"
        else:
            return await run_in_threadpool(lambda: predict_form(request, fields=fields, result=result, clip_name=name))
        return await run_in_threadpool(lambda: predict_form(request, status, fields=fields, error=message))

    @app.get("/studies", response_class=HTMLResponse)
    def studies(request: Request) -> HTMLResponse:
        return page(request, "studies.html.j2", title="studies", found=pages.studies())

    @app.get("/files/{path:path}")
    def files(path: str) -> FileResponse:
        return FileResponse(workspace_file(settings.workspace.root.resolve(), path))

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes, page=limit_page)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(Guard, token=settings.token)
    return app

