"""The `artextract` command line: parses arguments and calls library functions, nothing more.

Every command: `--config FILE.yaml`, repeated `--set section.key=value`, `--force` to write into a non-empty
folder; exit code 0 on success, 2 with a one-line reason on stderr for bad usage or bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from artextract import __version__
from artextract.errors import ArtExtractError

app = typer.Typer(
    name="artextract",
    help="Classify paintings by artist, style and genre with convolutional-recurrent networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[Path | None, typer.Option("--config", help="YAML file with config sections.",
                                                      dir_okay=False)]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: section.key=value "
                                                                    "(repeatable).")]
ForceOption = Annotated[bool, typer.Option("--force", help="Allow writing into a non-empty output folder.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="More log output.")]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"artextract {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Classify paintings by artist, style and genre with convolutional-recurrent networks."""


def _overrides(section: str, overrides: list[str] | None, **flags: Any) -> list[str]:
    """`--set` values, then the shorthand flags that were given (flags win)."""
    given = [f"{section}.{key}={value}" for key, value in flags.items() if value is not None]
    return list(overrides or []) + given


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to create: OUT/wikiart/ images and OUT/csv/ split files.")],
    artists: Annotated[int | None, typer.Option(help="How many of the 23 artist classes (the first N).")] = None,
    per_artist: Annotated[int | None, typer.Option(help="Paintings per artist.")] = None,
    size: Annotated[int | None, typer.Option(help="Short side of the paintings in pixels.")] = None,
    val_fraction: Annotated[float | None, typer.Option(help="Share of each artist's paintings in val.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; the same seed gives identical files.")] = None,
    quirks: Annotated[bool | None, typer.Option("--quirks/--no-quirks", help="Inject the real data's quirks.")]
    = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (0 = all cores).")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    force: ForceOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Generate an ArtGAN-shaped WikiArt stand-in: learnable paintings and CSVs in the published formats."""
    from artextract.config import load_config, write_config
    from artextract.core.environment import write_environment
    from artextract.core.outdir import prepare_output_dir
    from artextract.core.progress import setup_logging
    from artextract.data.synth import generate_dataset

    setup_logging(verbose)
    cfg = load_config(config, _overrides("synth", set_, artists=artists, per_artist=per_artist, size=size,
                                         val_fraction=val_fraction, seed=seed, quirks=quirks, workers=workers))
    out = prepare_output_dir(out, force=force)
    summary = generate_dataset(out, cfg.synth)
    write_config(cfg, out / "config.yaml", sections=("synth",))
    write_environment(out)
    typer.echo(f"{summary.images} paintings by {len(summary.artists)} artists in {out / 'wikiart'}")
    for name, count in summary.rows.items():
        typer.echo(f"  csv/{name}: {count} rows")
    if summary.quirks:
        kinds = sorted({str(q['kind']) for q in summary.quirks})
        typer.echo(f"  quirks injected ({len(summary.quirks)}): {', '.join(kinds)}; details in {out / 'synth.json'}")


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2.

    Typer (click) already reports usage errors with exit code 2 and Ctrl-C with 130.
    """
    try:
        app()
    except ArtExtractError as err:
        typer.echo(f"artextract: error: {err}", err=True)
        sys.exit(2)
