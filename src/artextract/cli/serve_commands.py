"""`artextract serve`: the explorer in a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artextract.cli.app import VerboseOption, app
from artextract.errors import ArtExtractError


@app.command()
def serve(
    run: Annotated[Path, typer.Argument(
        metavar="RUN", help="Evaluated RUN folder (its eval/ is the collection shown).")],
    data: Annotated[Path | None, typer.Option("--data", help="DATA folder holding the paintings' images "
                                                             "(default: the one the run was trained on).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 keeps it to this machine.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    max_upload_mb: Annotated[int, typer.Option("--max-upload-mb", min=1, max=1024,
                                               help="Largest image file accepted on the New painting page.")] = 50,
    audit: Annotated[Path | None, typer.Option("--audit", help="A label audit of the run's DATA (`artextract "
                                                               "audit --out AUDIT`): adds the Label issues view.")]
    = None,
    verbose: VerboseOption = False,
) -> None:
    """Browse an evaluated collection, find similar paintings and classify a new one, in the browser."""
    from artextract.core.progress import setup_logging
    from artextract.serve.app import serve as run_server

    setup_logging(verbose)
    if not run.is_dir():
        raise ArtExtractError(f"{run} is not a folder: pass an evaluated RUN folder")
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"artextract: warning: listening on {host}: anyone who can reach this machine can browse the "
                   "collection and upload images; there is no authentication", err=True)
    run_server(run, data, host, port, max_upload_mb, audit)  # says where it serves once the checks have passed
