"""The `artextract` application object, the options every command shares, and the helpers the commands use to
resolve their config, record it and say what to run next."""

from __future__ import annotations

import functools
import inspect
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
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
SetOption = Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Override a config key: "
                                                                                     "section.key=value (repeatable).")]
ForceOption = Annotated[bool, typer.Option("--force", help="Allow writing into a non-empty output folder.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="More log output.")]
# The options of the commands that read images with a trained model (predict, similar).
ImagesArgument = Annotated[list[str], typer.Argument(metavar="IMAGES", help="Images, folders (searched recursively) "
                                                                           "or globs.")]
ModelOption = Annotated[Path, typer.Option("--model", help="model.safetensors written by `artextract train`, or its "
                                                          "RUN folder.")]
FormatOption = Annotated[str | None, typer.Option("--format", help="table, json or csv (default: from the --output "
                                                                   "extension, else table).")]
OutputOption = Annotated[Path | None, typer.Option("--output", help="Write to this file instead of stdout.")]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
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


@dataclass(frozen=True)
class ConfigArgs:
    """What every command that reads a config is given: the file, `--set`, `--force`, `--print-config`,
    `--verbose` (declared once, by `with_config`)."""

    path: Path | None
    overrides: list[str]
    force: bool
    print_config: bool
    verbose: bool

    def resolve(self, sections: tuple[str, ...], flags: dict[str, Any] | None = None, base: Any = None) -> Any:
        """Logging set up, then the config (see `resolve_config`)."""
        return resolve_config(self.verbose, self.path, self.overrides, sections, self.print_config, base=base,
                              flags=flags)


_CONFIG_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("config", ConfigOption, None), ("set_", SetOption, None), ("force", ForceOption, False),
    ("print_config", PrintConfigOption, False), ("verbose", VerboseOption, False))


class with_config:  # a decorator, hence the lower-case name
    """`command(..., *, args: ConfigArgs)` as Typer sees it: its own parameters, then `--config`, `--set`,
    `--force`, `--print-config` and `--verbose`, handed to it as one `ConfigArgs`.

    The signature is worked out whenever Typer asks (each time the command line is built), as for a plain
    function: flag help that lists registries (readers) then includes what was registered after this import."""

    def __init__(self, command: Callable[..., None]) -> None:
        self.command = command
        functools.update_wrapper(self, command)

    @property
    def __signature__(self) -> inspect.Signature:
        own = [p for p in inspect.signature(self.command, eval_str=True).parameters.values() if p.name != "args"]
        shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
                  for name, annotation, default in _CONFIG_OPTIONS]
        return inspect.Signature(own + shared)

    def __call__(self, **kwargs: Any) -> None:
        config, set_, force, print_config, verbose = (kwargs.pop(name) for name, _, _ in _CONFIG_OPTIONS)
        self.command(**kwargs, args=ConfigArgs(config, list(set_ or []), force, print_config, verbose))


def record_config(out: Path, cfg: Any, section: str) -> None:
    """The resolved config and the environment beside a command's outputs."""
    from artextract.config_files import write_config
    from artextract.core.environment import write_environment
    from artextract.layout import CONFIG, ENVIRONMENT

    write_config(cfg, out / CONFIG, sections=(section,))
    write_environment(Path(out) / ENVIRONMENT)


def resolve_config(verbose: bool, path: Path | None, overrides: list[str] | None, sections: tuple[str, ...],
                   print_config: bool, base: Any = None, flags: dict[str, Any] | None = None) -> Any:
    """Logging set up, then the config: `base` (defaults if None), the file, the `--set` overrides, the flags
    given (typed, see `cli.flags`); range-checked. With `print_config` the resolved `sections` are printed and
    the command ends there."""
    from artextract.config_files import config_yaml, load_config
    from artextract.core.progress import setup_logging

    setup_logging(verbose)
    cfg = load_config(path, overrides, base=base, values=flags)
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


def check_output_file(output: Path | None, force: bool) -> None:
    """Refuse, before the work, an `--output` that exists (without `--force`) or cannot be written."""
    from artextract.core.outdir import require_writable_file
    from artextract.errors import ArtExtractError

    if output is not None:
        if output.exists() and not force:
            raise ArtExtractError(f"--output {output} exists: choose another file, or pass --force to overwrite it")
        require_writable_file(output)


def image_inputs(paths: list[str]) -> list[str]:
    """The images that `paths` (files, folders, globs) name, or an error saying none was found."""
    from artextract.errors import ArtExtractError
    from artextract.predictor import expand_inputs

    items = expand_inputs(paths)
    if not items:
        raise ArtExtractError(f"no images found in {' '.join(paths)}")
    return items


def emit(text: str, output: Path | None, what: str) -> None:
    """`text` to `output` (atomically, saying so on stderr) or to stdout."""
    from artextract.core.atomic import write_text

    if output is not None:
        write_text(output, text)
        typer.echo(f"artextract: wrote {what} to {output}", err=True)
    else:
        typer.echo(text, nl=False)
