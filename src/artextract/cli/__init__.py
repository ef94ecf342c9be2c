"""The `artextract` command line: parses arguments and calls library functions, nothing more.

`synth`, `prepare`, `train` and `ablate` take `--config FILE.yaml` and repeated `--set section.key=value` (their
config sections); every command takes `--force` to write into a non-empty output folder or over an output file;
`evaluate`, `compare` and `predict` take plain flags only. Every command: exit code 0 on success, 2 with a one-line
reason on stderr for bad usage or bad input.
"""

from __future__ import annotations

import errno
import importlib
import sys

import typer

from artextract.cli.app import app
from artextract.errors import ArtExtractError

# The commands register themselves on `app` when their modules load, in the order --help lists them.
for _commands in ("data_commands", "train_commands", "result_commands", "serve_commands"):
    importlib.import_module(f"artextract.cli.{_commands}")

__all__ = ["app", "main"]


# A full disk, a quota or a file system turned read-only mid-run: the environment, not a bug.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _click_exceptions(name: str) -> tuple[type[BaseException], ...]:
    """Click's exception class `name`, from the click that typer uses (recent typer releases carry their own copy
    in typer._click) and from click itself, whichever are installed."""
    found = []
    for module_name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(getattr(importlib.import_module(module_name), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def main() -> None:
    """Console entry point: user errors, usage errors included, become one line on stderr and exit code 2;
    Ctrl-C exits with 130."""
    usage_errors, aborts = _click_exceptions("UsageError"), _click_exceptions("Abort")
    try:
        code = app(standalone_mode=False)  # usage errors come here instead of click's boxed message
        sys.exit(code if isinstance(code, int) else 0)
    except usage_errors as err:
        context = getattr(err, "ctx", None)
        command = context.command_path if context is not None else "artextract"
        typer.echo(f"artextract: error: {err.format_message()} (see `{command} --help`)", err=True)
        sys.exit(2)
    except aborts:
        typer.echo("artextract: interrupted", err=True)
        sys.exit(130)
    except ArtExtractError as err:
        typer.echo(f"artextract: error: {err}", err=True)
        sys.exit(2)
    except OSError as err:
        if err.errno not in _ENVIRONMENT_ERRNOS:
            raise  # anything else is a bug, and keeps its traceback
        where = f" while writing {err.filename}" if err.filename else ""
        typer.echo(f"artextract: error: {err.strerror}{where}: free some space (or choose a writable place) and "
                   "rerun; every file is written whole or not at all, and train, prepare and evaluate resume",
                   err=True)
        sys.exit(2)
