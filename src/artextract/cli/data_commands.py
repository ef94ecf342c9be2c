"""`artextract synth` and `artextract prepare`: the data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artextract.cli.app import ConfigArgs, app, print_next, record_config, with_config
from artextract.cli.flags import config_flag, given


@app.command()
@with_config
def synth(
    out: Annotated[Path, typer.Argument(
        metavar="OUT", help="Folder to create: OUT/wikiart/ images and OUT/csv/ split files.")],
    artists: config_flag("synth.artists") = None,
    per_artist: config_flag("synth.per_artist") = None,
    size: config_flag("synth.size") = None,
    val_fraction: config_flag("synth.val_fraction") = None,
    seed: config_flag("synth.seed") = None,
    quirks: config_flag("synth.quirks") = None,
    workers: config_flag("synth.workers") = None,
    *,
    args: ConfigArgs,
) -> None:
    """Generate an ArtGAN-shaped WikiArt stand-in: learnable paintings and CSVs in the published formats."""
    from artextract.core.outdir import prepare_output_dir, undo_on_failure
    from artextract.data.synth import generate_dataset

    flags = given("synth", artists=artists, per_artist=per_artist, size=size, val_fraction=val_fraction, seed=seed,
                  quirks=quirks, workers=workers)
    cfg = args.resolve(("synth",), flags)
    with undo_on_failure(out):
        prepare_output_dir(out, force=args.force)
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
@with_config
def prepare(
    csv_dir: Annotated[Path, typer.Option("--csv-dir", help="Folder with the ArtGAN class and split files.")],
    images: Annotated[Path, typer.Option("--images", help="The image folder, or wikiart.zip itself.")],
    out: Annotated[Path, typer.Option("--out", help="DATA folder to write (rerunning on it resumes).")],
    cache_size: config_flag("prepare.cache_size") = None,
    protocol: config_flag("prepare.protocol") = None,
    select_fraction: config_flag("prepare.select_fraction") = None,
    test_fraction: config_flag("prepare.test_fraction") = None,
    max_pixels: config_flag("prepare.max_pixels") = None,
    workers: config_flag("prepare.workers") = None,
    seed: config_flag("prepare.seed") = None,
    shard: Annotated[str, typer.Option(help="Build only part i of n of the cache (i/n), e.g. one per machine.")]
    = "0/1",
    overrides: Annotated[list[Path] | None, typer.Option(
        "--overrides", metavar="CSV_OR_AUDIT",
        help="A reviewed label_issues_<task>.csv of `artextract audit` (or its AUDIT folder): its keep/relabel/drop "
             "decisions replace the CSVs' labels (repeatable).")] = None,
    image_size: Annotated[int | None, typer.Option(hidden=True, help="Old name of --cache-size.")] = None,
    *,
    args: ConfigArgs,
) -> None:
    """Build the leak-free manifest, the image cache and the report from the ArtGAN CSVs and images."""
    from artextract.core.outdir import prepare_output_dir, undo_on_failure
    from artextract.data.cache_files import LAYOUT_FILE
    from artextract.data.prepare_report import summary_lines
    from artextract.layout import DataFolder
    from artextract.stages.prepare import parse_shard, prepare_dataset

    if image_size is not None:
        typer.echo("artextract: --image-size of prepare is now --cache-size (the old name still works but will go)",
                   err=True)
        cache_size = image_size if cache_size is None else cache_size
    flags = given("prepare", cache_size=cache_size, protocol=protocol, select_fraction=select_fraction,
                  test_fraction=test_fraction, max_pixels=max_pixels, workers=workers, seed=seed)
    cfg = args.resolve(("prepare",), flags)
    shard_pair = parse_shard(shard)
    # A prepare refused before its cache started leaves nothing behind, not an empty DATA folder; a cache that
    # started is kept (a rerun resumes it).
    with undo_on_failure(out, keep=lambda: (DataFolder(out).cache / LAYOUT_FILE).is_file()):
        out = prepare_output_dir(out, force=args.force,
                                 resumable_marker=f"{DataFolder(out).cache.name}/{LAYOUT_FILE}")
        result = prepare_dataset(csv_dir, images, out, cfg.prepare, shard_pair, rebuild=args.force,
                                 overrides=overrides or ())
    record_config(out, cfg, "prepare")
    for line in summary_lines(result.report):
        typer.echo(line)
    typer.echo(f"report: {DataFolder(out).report_md}")
    # The recipe's config names the model and training too: the next command takes it as this one did.
    print_next(f"artextract train --data {out} --out RUN" + (f" --config {args.path}" if args.path else ""))
