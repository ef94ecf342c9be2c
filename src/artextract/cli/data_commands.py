"""`artextract synth` and `artextract prepare`: the data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artextract.cli.app import (
    ConfigOption,
    ForceOption,
    PrintConfigOption,
    SetOption,
    VerboseOption,
    app,
    config_help,
    overrides_for,
    print_next,
    record_config,
    resolve_config,
)


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to create: OUT/wikiart/ images and OUT/csv/ split files.")],
    artists: Annotated[int | None, typer.Option(
        help=config_help("synth.artists", "How many of the 23 artist classes (the first N)."))] = None,
    per_artist: Annotated[int | None, typer.Option(
        help=config_help("synth.per_artist", "Paintings per artist."))] = None,
    size: Annotated[int | None, typer.Option(
        help=config_help("synth.size", "Short side of the paintings in pixels."))] = None,
    val_fraction: Annotated[float | None, typer.Option(
        help=config_help("synth.val_fraction", "Share of each artist's paintings in val."))] = None,
    seed: Annotated[int | None, typer.Option(
        help=config_help("synth.seed", "Random seed; the same seed gives identical files."))] = None,
    quirks: Annotated[bool | None, typer.Option("--quirks/--no-quirks",
        help=config_help("synth.quirks", "Inject the real data's quirks."))]
    = None,
    workers: Annotated[int | None, typer.Option(
        help=config_help("synth.workers", "Worker processes (0 = all cores)."))] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    force: ForceOption = False,
    print_config: PrintConfigOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Generate an ArtGAN-shaped WikiArt stand-in: learnable paintings and CSVs in the published formats."""
    from artextract.core.outdir import prepare_output_dir, undo_on_failure
    from artextract.data.synth import generate_dataset

    overrides = overrides_for("synth", set_, artists=artists, per_artist=per_artist, size=size,
                           val_fraction=val_fraction, seed=seed, quirks=quirks, workers=workers)
    cfg = resolve_config(verbose, config, overrides, ("synth",), print_config)
    with undo_on_failure(out):
        prepare_output_dir(out, force=force)
        summary = generate_dataset(out, cfg.synth)
        record_config(out, cfg, "synth")
    typer.echo(f"{summary.images} paintings by {len(summary.artists)} artists in {out / 'wikiart'}")
    for name, count in summary.rows.items():
        typer.echo(f"  csv/{name}: {count} rows")
    if summary.quirks:
        kinds = sorted({str(q['kind']) for q in summary.quirks})
        typer.echo(f"  quirks injected ({len(summary.quirks)}): {', '.join(kinds)}; details in {out / 'synth.json'}")
    print_next(f"artextract prepare --csv-dir {out / 'csv'} --images {out / 'wikiart'} --out DATA")


@app.command()
def prepare(
    csv_dir: Annotated[Path, typer.Option("--csv-dir", help="Folder with the ArtGAN class and split files.")],
    images: Annotated[Path, typer.Option("--images", help="The image folder, or wikiart.zip itself.")],
    out: Annotated[Path, typer.Option("--out", help="DATA folder to write (rerunning on it resumes).")],
    image_size: Annotated[int | None, typer.Option(
        help=config_help("prepare.image_size", "Side of the cached square images in pixels."))] = None,
    protocol: Annotated[str | None, typer.Option(
        help=config_help("prepare.protocol", "leak-free (default) or inner-join."))] = None,
    select_fraction: Annotated[float | None, typer.Option(
        help=config_help("prepare.select_fraction", "Share of training images held out for "
                                                                "early stopping."))] = None,
    max_pixels: Annotated[int | None, typer.Option(
        help=config_help("prepare.max_pixels", "Skip images with more pixels than this."))] = None,
    workers: Annotated[int | None, typer.Option(
        help=config_help("prepare.workers", "Decoding processes (0 = all cores)."))] = None,
    seed: Annotated[int | None, typer.Option(
        help=config_help("prepare.seed", "Seed of the selection-set draw."))] = None,
    shard: Annotated[str, typer.Option(help="Build only part i of n of the cache (i/n), e.g. one per machine.")]
    = "0/1",
    config: ConfigOption = None,
    set_: SetOption = None,
    force: ForceOption = False,
    print_config: PrintConfigOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Build the leak-free manifest, the image cache and the report from the ArtGAN CSVs and images."""
    from artextract.core.outdir import prepare_output_dir
    from artextract.data.cache_files import LAYOUT_FILE
    from artextract.data.prepare_report import summary_lines
    from artextract.layout import DataFolder
    from artextract.stages.prepare import parse_shard, prepare_dataset

    overrides = overrides_for("prepare", set_, image_size=image_size, protocol=protocol,
                           select_fraction=select_fraction, max_pixels=max_pixels, workers=workers, seed=seed)
    cfg = resolve_config(verbose, config, overrides, ("prepare",), print_config)
    shard_pair = parse_shard(shard)
    out = prepare_output_dir(out, force=force, resumable_marker=f"{DataFolder(out).cache.name}/{LAYOUT_FILE}")
    result = prepare_dataset(csv_dir, images, out, cfg.prepare, shard_pair, rebuild=force)
    record_config(out, cfg, "prepare")
    for line in summary_lines(result.report):
        typer.echo(line)
    typer.echo(f"report: {DataFolder(out).report_md}")
    # The recipe's config names the model and training too: the next command takes it as this one did.
    print_next(f"artextract train --data {out} --out RUN" + (f" --config {config}" if config else ""))
