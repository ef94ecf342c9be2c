"""The `artextract` application object, the options every command shares, and the helpers the commands use to
resolve their config, record it and say what to run next."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from artextract.core.version import VERSION

app = typer.Typer(
    name="artextract",
    help="Classify paintings by artist, style and genre with convolutional-recurrent networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: the rich layout of recent Typer puts a `<bool>` placeholder after every flag, as if it took a value.
    rich_markup_mode=None,
)

ConfigOption = Annotated[Path | None, typer.Option("--config", help="YAML file with config sections.",
                                                      dir_okay=False)]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: section.key=value "
                                                                    "(repeatable).")]
ForceOption = Annotated[bool, typer.Option("--force", help="Allow writing into a non-empty output folder.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="More log output.")]
PrintConfigOption = Annotated[bool, typer.Option("--print-config", help="Print the resolved config and exit.")]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"artextract {VERSION}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Classify paintings by artist, style and genre with convolutional-recurrent networks."""


def record_config(out: Path, cfg: Any, section: str) -> None:
    """The resolved config and the environment beside a command's outputs."""
    from artextract.config_files import write_config
    from artextract.core.environment import write_environment
    from artextract.layout import CONFIG, ENVIRONMENT

    write_config(cfg, out / CONFIG, sections=(section,))
    write_environment(Path(out) / ENVIRONMENT)


def config_help(key: str, text: str) -> str:
    """Help text of a flag that sets config key `key`, with the key and its default (flags left unset keep the
    config file's value, so Typer itself shows no default)."""
    from artextract.config_files import default_value

    return f"{text} (config {key}; default: {default_value(key)})"


def resolve_config(verbose: bool, path: Path | None, overrides: list[str], sections: tuple[str, ...],
                    print_config: bool, base: Any = None) -> Any:
    """Logging set up, then the config: `base` (defaults if None), the file, the overrides; range-checked.
    With `print_config` the resolved `sections` are printed and the command ends there."""
    from artextract.config_files import config_yaml, load_config
    from artextract.core.progress import setup_logging

    setup_logging(verbose)
    cfg = load_config(path, overrides, base=base)
    if print_config:
        typer.echo(config_yaml(cfg, sections), nl=False)
        raise typer.Exit(0)
    return cfg


def program_name() -> str:
    """How to run this program again, as typed in this shell: `artextract` when that is what PATH finds, else the
    path it was started by (e.g. `.venv/bin/artextract` after `make demo`, without an activated venv)."""
    invoked = Path(sys.argv[0])
    if invoked.name != "artextract":  # python -m, or an embedding program
        return "python -m artextract"
    on_path = shutil.which("artextract")
    if str(invoked) == invoked.name or (on_path is not None and Path(on_path).resolve() == invoked.resolve()):
        return "artextract"  # the shell found it on PATH
    try:
        return f".{os.sep}{invoked.resolve().relative_to(Path.cwd())}"
    except ValueError:
        return str(invoked.resolve())


def print_next(command: str) -> None:
    """The command a user would run next, so that each stage leads to the following one; printed so that it runs
    as printed (see `program_name`)."""
    program = program_name()
    typer.echo(f"next: {program}{command.removeprefix('artextract')}" if command.startswith("artextract ")
               else f"next: {command}")


def overrides_for(section: str, overrides: list[str] | None, **flags: Any) -> list[str]:
    """`--set` values, then the shorthand flags that were given (flags win)."""
    given = [f"{section}.{key}={value}" for key, value in flags.items() if value is not None]
    return list(overrides or []) + given
