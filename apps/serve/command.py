"""``hcm serve``: the command's options and checks; the web stack loads only after they pass."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional

import typer

from hcm.apps.commands import command
from hcm.apps.serve.settings import DEFAULT_PORT, DEFAULT_UPLOAD_MB, ServeSettings
from hcm.core.errors import UsageError, report_errors
from hcm.core.workspace import Workspace

#: import name -> the package that provides it (the ``serve`` extra of setup.cfg)
WEB_PACKAGES = {"fastapi": "fastapi", "uvicorn": "uvicorn", "multipart": "python-multipart", "jinja2": "jinja2"}
INSTALL = "pip install 'hcm[serve]' (or pip install -e '.[serve]' in a clone)"


def missing_packages() -> list[str]:
    """The web packages ``hcm serve`` needs that are not installed."""
    return [package for module, package in WEB_PACKAGES.items() if importlib.util.find_spec(module) is None]


@contextmanager
def background_server(settings: ServeSettings, timeout: float = 60.0) -> Iterator[str]:
    """Run the server on a thread while the ``with`` block runs (tests, benchmarks, notebooks); yields
    its address (``settings.port`` 0: a free port)."""
    import uvicorn

    from hcm.apps.serve.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="hcm-serve", daemon=True)
    thread.start()
    waited = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - waited > timeout:
            raise RuntimeError(f"hcm serve did not start on {settings.host}:{settings.port} within {timeout:g} s")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{settings.host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def check_port(host: str, port: int) -> None:
    """Refuse a port another program listens on, before loading anything."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UsageError(f"cannot listen on {host}:{port} ({error.strerror}); another program may use the port: "
                             f"give another with --port") from error


def serve(settings: ServeSettings) -> None:
    """Print the address, then answer requests until Ctrl-C."""
    missing = missing_packages()
    if missing:
        raise UsageError(f"hcm serve needs the web packages {', '.join(missing)}: {INSTALL}")
    check_port(settings.host, settings.port)
    import uvicorn

    from hcm.apps.serve.app import create_app

    app = create_app(settings)
    typer.echo(f"hcm serve: workspace {settings.workspace.root}")
    typer.echo(f"open {settings.url}" + ("  (the token is required: keep this address private)"
                                         if settings.token else "") + "; Ctrl-C stops the server")
    if settings.host in ("0.0.0.0", "::"):
        typer.echo(f"({settings.host} listens on every address of this machine: from another one, put this "
                   f"machine's name or IP address in its place)")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


@command("serve", "hcm serve", "hcm serve --host 0.0.0.0 --port 8000")
def serve_command(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to listen on. Any other than the loopback one asks for an access token."),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="TCP port."),
    token: Optional[str] = typer.Option(
        None, "--token", envvar="HCM_SERVE_TOKEN", show_default="made up for a non-loopback --host",
        help="Access token (16+ characters) every request must carry (query ?token=... once, then a cookie)."),
    max_upload_mb: float = typer.Option(DEFAULT_UPLOAD_MB, "--max-upload-mb",
                                        help="Largest clip the predict page accepts, in MB."),
) -> None:
    """A local web app over the workspace: browse runs, study errors with the clip playing, predict on a clip.

    Pages: runs (the `hcm runs` table), each run's report and per-sample table (explain an item, play its
    clip), compare runs, predict on an uploaded clip, the `hcm tune` studies. Listens on 127.0.0.1 unless
    --host says otherwise, and then only with an access token (docs/serve.md).
    """
    workspace: Workspace = ctx.obj
    try:
        settings = ServeSettings.checked(workspace, host, port, token, max_upload_mb)
    except UsageError as error:
        raise typer.BadParameter(str(error)) from error
    raise typer.Exit(report_errors(lambda: serve(settings), also=(OSError,)))
