"""The `artextract` command line: parses arguments and calls library functions, nothing more.

`synth`, `prepare`, `train` and `ablate` take `--config FILE.yaml` and repeated `--set section.key=value` (their
config sections); every command takes `--force` to write into a non-empty output folder or over an output file;
`evaluate`, `compare` and `predict` take plain flags only. Every command: exit code 0 on success, 2 with a one-line
reason on stderr for bad usage or bad input.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from artextract.core.version import VERSION
from artextract.errors import ArtExtractError
from artextract.models.readers import reader_help

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


def _record(out: Path, cfg: Any, section: str) -> None:
    """The resolved config and the environment beside a command's outputs."""
    from artextract.config_files import write_config
    from artextract.core.environment import write_environment
    from artextract.layout import CONFIG, ENVIRONMENT

    write_config(cfg, out / CONFIG, sections=(section,))
    write_environment(Path(out) / ENVIRONMENT)


def _h(key: str, text: str) -> str:
    """Help text of a flag that sets config key `key`, with the key and its default (flags left unset keep the
    config file's value, so Typer itself shows no default)."""
    from artextract.config_files import default_value

    return f"{text} (config {key}; default: {default_value(key)})"


def _resolve_config(verbose: bool, path: Path | None, overrides: list[str], sections: tuple[str, ...],
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


def _program() -> str:
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


def _next(command: str) -> None:
    """The command a user would run next, so that each stage leads to the following one; printed so that it runs
    as printed (see `_program`)."""
    program = _program()
    typer.echo(f"next: {program}{command.removeprefix('artextract')}" if command.startswith("artextract ")
               else f"next: {command}")


def _overrides(section: str, overrides: list[str] | None, **flags: Any) -> list[str]:
    """`--set` values, then the shorthand flags that were given (flags win)."""
    given = [f"{section}.{key}={value}" for key, value in flags.items() if value is not None]
    return list(overrides or []) + given


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to create: OUT/wikiart/ images and OUT/csv/ split files.")],
    artists: Annotated[int | None, typer.Option(
        help=_h("synth.artists", "How many of the 23 artist classes (the first N)."))] = None,
    per_artist: Annotated[int | None, typer.Option(help=_h("synth.per_artist", "Paintings per artist."))] = None,
    size: Annotated[int | None, typer.Option(help=_h("synth.size", "Short side of the paintings in pixels."))] = None,
    val_fraction: Annotated[float | None, typer.Option(
        help=_h("synth.val_fraction", "Share of each artist's paintings in val."))] = None,
    seed: Annotated[int | None, typer.Option(
        help=_h("synth.seed", "Random seed; the same seed gives identical files."))] = None,
    quirks: Annotated[bool | None, typer.Option("--quirks/--no-quirks",
        help=_h("synth.quirks", "Inject the real data's quirks."))]
    = None,
    workers: Annotated[int | None, typer.Option(help=_h("synth.workers", "Worker processes (0 = all cores)."))] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    force: ForceOption = False,
    print_config: PrintConfigOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Generate an ArtGAN-shaped WikiArt stand-in: learnable paintings and CSVs in the published formats."""
    from artextract.core.outdir import prepare_output_dir, undo_on_failure
    from artextract.data.synth import generate_dataset

    overrides = _overrides("synth", set_, artists=artists, per_artist=per_artist, size=size,
                           val_fraction=val_fraction, seed=seed, quirks=quirks, workers=workers)
    cfg = _resolve_config(verbose, config, overrides, ("synth",), print_config)
    with undo_on_failure(out):
        prepare_output_dir(out, force=force)
        summary = generate_dataset(out, cfg.synth)
        _record(out, cfg, "synth")
    typer.echo(f"{summary.images} paintings by {len(summary.artists)} artists in {out / 'wikiart'}")
    for name, count in summary.rows.items():
        typer.echo(f"  csv/{name}: {count} rows")
    if summary.quirks:
        kinds = sorted({str(q['kind']) for q in summary.quirks})
        typer.echo(f"  quirks injected ({len(summary.quirks)}): {', '.join(kinds)}; details in {out / 'synth.json'}")
    _next(f"artextract prepare --csv-dir {out / 'csv'} --images {out / 'wikiart'} --out DATA")


@app.command()
def prepare(
    csv_dir: Annotated[Path, typer.Option("--csv-dir", help="Folder with the ArtGAN class and split files.")],
    images: Annotated[Path, typer.Option("--images", help="The image folder, or wikiart.zip itself.")],
    out: Annotated[Path, typer.Option("--out", help="DATA folder to write (rerunning on it resumes).")],
    image_size: Annotated[int | None, typer.Option(
        help=_h("prepare.image_size", "Side of the cached square images in pixels."))] = None,
    protocol: Annotated[str | None, typer.Option(
        help=_h("prepare.protocol", "leak-free (default) or inner-join."))] = None,
    select_fraction: Annotated[float | None, typer.Option(
        help=_h("prepare.select_fraction", "Share of training images held out for "
                                                                "early stopping."))] = None,
    max_pixels: Annotated[int | None, typer.Option(
        help=_h("prepare.max_pixels", "Skip images with more pixels than this."))] = None,
    workers: Annotated[int | None, typer.Option(
        help=_h("prepare.workers", "Decoding processes (0 = all cores)."))] = None,
    seed: Annotated[int | None, typer.Option(help=_h("prepare.seed", "Seed of the selection-set draw."))] = None,
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
    from artextract.data.cache import LAYOUT_FILE
    from artextract.data.prepare_report import summary_lines
    from artextract.layout import DataFolder
    from artextract.stages.prepare import parse_shard, prepare_dataset

    overrides = _overrides("prepare", set_, image_size=image_size, protocol=protocol,
                           select_fraction=select_fraction, max_pixels=max_pixels, workers=workers, seed=seed)
    cfg = _resolve_config(verbose, config, overrides, ("prepare",), print_config)
    shard_pair = parse_shard(shard)
    out = prepare_output_dir(out, force=force, resumable_marker=f"{DataFolder(out).cache.name}/{LAYOUT_FILE}")
    result = prepare_dataset(csv_dir, images, out, cfg.prepare, shard_pair, rebuild=force)
    _record(out, cfg, "prepare")
    for line in summary_lines(result.report):
        typer.echo(line)
    typer.echo(f"report: {DataFolder(out).report_md}")
    # The recipe's config names the model and training too: the next command takes it as this one did.
    _next(f"artextract train --data {out} --out RUN" + (f" --config {config}" if config else ""))


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="RUN folder to write.")],
    data: Annotated[Path | None, typer.Option("--data", help="DATA folder written by `artextract prepare` "
                                                             "(with --resume: the run's own, by default).")] = None,
    tasks: Annotated[str | None, typer.Option(
        help=_h("model.tasks", "Comma-separated tasks: artist,style,genre."))] = None,
    backbone: Annotated[str | None, typer.Option(help=_h("model.backbone", "timm model name, e.g. resnet18."))] = None,
    weights: Annotated[str | None, typer.Option(
        help=_h("model.weights", "none, imagenet, or a .safetensors/.pth file."))] = None,
    reader: Annotated[str | None, typer.Option(
        help=_h("model.reader", reader_help() + "."))] = None,
    epochs: Annotated[int | None, typer.Option(help=_h("train.epochs", "Number of epochs."))] = None,
    batch_size: Annotated[int | None, typer.Option(help=_h("train.batch_size", "Images per device per step."))] = None,
    image_size: Annotated[int | None, typer.Option(
        help=_h("train.image_size", "Side of the crops fed to the model."))] = None,
    devices: Annotated[str | None, typer.Option(
        help=_h("train.devices", "auto, a count, or a list such as 0,1."))] = None,
    num_nodes: Annotated[int | None, typer.Option(help=_h("train.num_nodes", "Machines taking part (DDP)."))] = None,
    precision: Annotated[str | None, typer.Option(
        help=_h("train.precision", "auto, 32-true, bf16-mixed or 16-mixed."))] = None,
    compile_: Annotated[bool | None, typer.Option("--compile/--no-compile",
        help=_h("train.compile", "torch.compile the model."))]
    = None,
    freeze_backbone: Annotated[bool | None, typer.Option("--freeze-backbone/--no-freeze-backbone",

        help=_h("train.freeze_backbone", "Train only the reader and heads, from the backbone's "
                                                              "feature maps cached in DATA/features/."))] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last.pt.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
    force: ForceOption = False,
    print_config: PrintConfigOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Train a convolutional-recurrent classifier on a prepared DATA folder (one GPU, several, or the CPU)."""
    from artextract.config_files import load_config
    from artextract.layout import RunFolder
    from artextract.stages.train import train as run_training

    overrides = _overrides("model", None, tasks=tasks, backbone=backbone, weights=weights, reader=reader)
    overrides += _overrides("train", set_, epochs=epochs, batch_size=batch_size, image_size=image_size,
                            devices=devices, num_nodes=num_nodes, precision=precision, compile=compile_,
                            freeze_backbone=freeze_backbone)
    saved = RunFolder(out).config
    if resume and not saved.is_file():
        raise ArtExtractError(f"{out} holds no run to resume ({saved.name} missing)")
    # On --resume: the run's own config, then any file and --set given now (e.g. more epochs).
    cfg = _resolve_config(verbose, config, overrides, ("model", "train"), print_config,
                          base=load_config(saved) if resume else None)
    if data is None:  # run.json records the DATA a run trained on: resuming needs no --data
        data = RunFolder(out).trained_on() if resume else None
        if data is None:
            raise ArtExtractError("--data DATA is needed: the folder written by `artextract prepare`"
                                  + (f" ({out} does not record one)" if resume else ""))
    result = run_training(data, out, cfg, resume=resume, force=force)
    state = result.state
    if result.primary:
        how = "interrupted" if result.interrupted else ("stopped early" if result.stopped_early else "finished")
        typer.echo(f"{how} after epoch {state.epoch}; best selection score {state.best_score:.4f} at epoch "
                   f"{state.best_epoch}")
        typer.echo(f"model: {result.run.model}  metrics: {result.run.metrics}")
        _next(f"artextract evaluate --run {out}" if not result.interrupted
              else f"artextract train --out {out} --resume")
    if result.interrupted:
        raise typer.Exit(130)


@app.command()
def ablate(
    data: Annotated[Path, typer.Option("--data", help="DATA folder written by `artextract prepare`.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the runs and the table (rerunning reuses "
                                                    "finished runs).")],
    variants: Annotated[str, typer.Option(help="Comma-separated variants to compare: readers of the last map (gap, "
                                               "gru-rows, ..., or any reader's name), and tune1, tune2, flip, "
                                               "tune1-flip, pyramid-gap, pyramid-gru, lite1, lite2.")]
    = "gap,gru-rows,gru-cols,gru-snake,gru-2d,lstm-rows,gru-rows-attention",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; each variant trains once per seed.")] = "0,1,2",
    folds: Annotated[int, typer.Option(min=0, max=100, help="K >= 2: score by K-fold cross-validation over the "
                                       "train and selection splits (K runs per variant and seed, every training "
                                       "painting scored once); 0: score on the selection split.")] = 0,
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="Add the linear probe (logistic regression on "
                                        "the first variant's pooled features) to the table.")] = True,
    config: ConfigOption = None,
    set_: SetOption = None,
    force: ForceOption = False,
    print_config: PrintConfigOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Compare the readers (GAP, GRU/LSTM scans, attention) on frozen-backbone features, with a linear probe."""
    from artextract.stages.ablate import ablate as run_ablation
    from artextract.stages.ablate import parse_variants

    cfg = _resolve_config(verbose, config, list(set_ or []), ("model", "train"), print_config)
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise ArtExtractError(f"--seeds expects integers like 0,1,2, got {seeds!r}") from None
    if not seed_list:
        raise ArtExtractError("--seeds names no seed")
    if folds == 1:
        raise ArtExtractError("--folds 1 leaves nothing to score on: give 0 (the selection split) or at least 2")
    result = run_ablation(data, out, cfg, parse_variants(variants), seed_list, force=force, folds=folds,
                          probe=probe)
    typer.echo(result.markdown, nl=False)
    typer.echo(f"table: {result.out / 'ablation.md'}")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Option("--run", help="RUN folder written by `artextract train`.")],
    data: Annotated[Path | None, typer.Option("--data", help="DATA folder (default: the one the run was "
                                                                 "trained on).")] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate: eval (official val sets), select or train.")]
    = "eval",
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default RUN/eval).")] = None,
    from_predictions: Annotated[bool, typer.Option("--from-predictions", help="Recompute everything from "
                                                   "predictions.parquet; no model, no GPU.")] = False,
    inject_noise: Annotated[float, typer.Option(help="Flip this share of labels (seeded) to validate the "
                                                     "outlier scores.")] = 0.0,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap, the noise and the samples.")] = 0,
    force: ForceOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Metrics with confidence intervals, calibration, validated outliers, heat maps and one HTML report."""
    from artextract.core.progress import setup_logging
    from artextract.report.terminal import metrics_table
    from artextract.stages.evaluate import evaluate_run

    setup_logging(verbose)
    if split not in ("eval", "select", "train"):
        raise ArtExtractError(f"--split must be eval, select or train, got {split!r}")
    if not 0.0 <= inject_noise < 1.0:
        raise ArtExtractError(f"--inject-noise must be in [0, 1), got {inject_noise}")
    if batch_size < 1:
        raise ArtExtractError(f"--batch-size must be at least 1, got {batch_size}")
    if not run.is_dir():
        raise ArtExtractError(f"--run {run} is not a folder")
    result, report = evaluate_run(run, data=data, split=split, out=out, inject=inject_noise, batch_size=batch_size,
                                  device=device, seed=seed, from_predictions=from_predictions, force=force)
    typer.echo(metrics_table(result.metrics), nl=False)
    typer.echo(f"report: {report}")
    _next(f"artextract predict --model {run} PAINTINGS...")


@app.command()
def compare(
    paths: Annotated[list[Path], typer.Argument(help="Evaluated RUN folders (their eval/) or EVAL folders.")],
    output: Annotated[Path | None, typer.Option("--output", help="Also write the comparison here (.md or .json).")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of the paired bootstrap.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """One table across runs, and paired tests (bootstrap interval, McNemar) for runs scored on the same images."""
    import json

    from artextract.core.atomic import write_text
    from artextract.core.outdir import require_writable_file
    from artextract.core.progress import setup_logging
    from artextract.stages.compare import compare as run_comparison
    from artextract.stages.compare import render_markdown

    setup_logging(verbose)
    if output is not None:  # checked before the work, not after it
        if output.exists() and not force:
            raise ArtExtractError(f"--output {output} exists: choose another file, or pass --force to overwrite it")
        require_writable_file(output)
    result = run_comparison(paths, seed=seed)
    text = render_markdown(result)
    typer.echo(text, nl=False)
    if output is not None:
        write_text(output, json.dumps(result, indent=2) + "\n" if output.suffix == ".json" else text)


@app.command()
def predict(
    paths: Annotated[list[str], typer.Argument(help="Images, folders (searched recursively) or globs.")],
    model: Annotated[Path, typer.Option("--model", help="model.safetensors written by `artextract train`, or its "
                                                        "RUN folder.")],
    top_k: Annotated[int, typer.Option("--top-k", help="Classes to list per task.")] = 5,
    format_: Annotated[str | None, typer.Option("--format", help="table, json or csv (default: from the --output "
                                                                 "extension, else table).")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Write to this file instead of stdout.")] = None,
    cam: Annotated[Path | None, typer.Option("--cam", help="Write Grad-CAM overlays of the top class into this "
                                                            "new or empty folder.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    workers: Annotated[int, typer.Option(help="Decoding processes (0 = in this process).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output, write into a non-empty --cam.")]
    = False,
    uncalibrated: Annotated[bool, typer.Option("--uncalibrated", help="Plain softmax probabilities, without the "
                                                                      "temperatures fitted on the selection set.")]
    = False,
    verbose: VerboseOption = False,
) -> None:
    """Top-k artists, styles and genres with probabilities for new paintings."""
    from artextract.core.atomic import write_text
    from artextract.core.outdir import prepare_output_dir, require_writable_file
    from artextract.core.progress import setup_logging
    from artextract.stages.predict import expand_inputs, format_predictions, load_model, output_format

    setup_logging(verbose)
    format_ = output_format(format_, output)
    if top_k < 1:
        raise ArtExtractError("--top-k must be at least 1")
    if batch_size < 1 or workers < 0:
        raise ArtExtractError(f"--batch-size must be at least 1 and --workers at least 0, got {batch_size} and "
                              f"{workers}")
    if output is not None:  # checked before the work, not after it
        if output.exists() and not force:
            raise ArtExtractError(f"--output {output} exists: choose another file, or pass --force to overwrite it")
        require_writable_file(output)
    items = expand_inputs(paths)
    if not items:
        raise ArtExtractError(f"no images found in {' '.join(paths)}")
    predictor = load_model(model, device, calibrated=not uncalibrated)
    if not uncalibrated:
        temperatures = ", ".join(f"{task} {t:.2f}" for task, t in predictor.temperature.items())
        typer.echo(f"artextract: probabilities calibrated by the selection set's temperatures ({temperatures}); "
                   "--uncalibrated for the plain softmax", err=True)
    if cam is not None:  # checked before the work, not after it
        prepare_output_dir(cam, force=force)
    results = []
    for result, square in predictor.iter_predict(items, top_k, batch_size, workers, progress=len(items) > 50):
        if result.status != "ok":
            typer.echo(f"artextract: skipped {result.source}: {result.status}", err=True)
        else:
            if result.warning:
                typer.echo(f"artextract: warning: {result.source}: {result.warning}", err=True)
            if cam is not None:
                predictor.write_heatmaps(square, result.source, len(results), cam)
        results.append(result.as_dict())
    text = format_predictions(results, format_)
    if output is not None:
        write_text(output, text)
        typer.echo(f"artextract: wrote the predictions of {len(results)} images to {output}", err=True)
    else:
        typer.echo(text, nl=False)
    if cam is not None:
        typer.echo(f"artextract: heat maps in {cam}", err=True)
    if not any(r["status"] == "ok" for r in results):
        raise ArtExtractError(f"none of the {len(results)} images could be predicted (reasons above)")


@app.command()
def demo(
    out: Annotated[Path, typer.Argument(help="Folder for the whole demo (dataset, DATA, RUN, report).")]
    = Path("artextract-demo"),
    force: ForceOption = False,
    verbose: VerboseOption = False,
) -> None:
    """The whole pipeline (synth, prepare, train, evaluate) on generated paintings, on a CPU, in minutes."""
    from artextract.core.outdir import prepare_output_dir
    from artextract.core.progress import setup_logging
    from artextract.stages.demo import run_demo

    setup_logging(verbose)
    out = prepare_output_dir(out, force=force)
    result = run_demo(out)
    typer.echo(result.headline, nl=False)
    typer.echo(f"report: {result.report}")
    _next(f"artextract predict --model {out / 'run'} {out / 'synth' / 'wikiart'}")


# A full disk, a quota or a file system turned read-only mid-run: the environment, not a bug.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _click_exceptions(name: str) -> tuple[type[BaseException], ...]:
    """Click's exception class `name`, from the click that typer uses (recent typer releases carry their own copy
    in typer._click) and from click itself, whichever are installed."""
    import importlib

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
