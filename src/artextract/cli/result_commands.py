"""`artextract evaluate`, `compare`, `predict`, `similar` and `demo`: what the models say."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artextract.cli.app import (
    DeviceOption,
    ForceOption,
    FormatOption,
    ImagesArgument,
    ModelOption,
    OutputOption,
    VerboseOption,
    app,
    check_output_file,
    emit,
    image_inputs,
    print_next,
)
from artextract.errors import ArtExtractError


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
    device: DeviceOption = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap, the noise and the samples.")] = 0,
    audit: Annotated[Path | None, typer.Option("--audit", help="A label audit of the run's DATA (`artextract audit "
                                                               "--out AUDIT`), summarised in the report.")] = None,
    force: ForceOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Metrics with confidence intervals, calibration, validated outliers, heat maps and one HTML report."""
    from artextract.core.progress import setup_logging
    from artextract.report.terminal import metrics_table
    from artextract.stages.evaluate import evaluate_run

    setup_logging(verbose)
    result, report = evaluate_run(run, data=data, split=split, out=out, inject=inject_noise, batch_size=batch_size,
                                  device=device, seed=seed, from_predictions=from_predictions, force=force,
                                  audit=audit)
    typer.echo(metrics_table(result.metrics), nl=False)
    typer.echo(f"report: {report}")
    print_next(f"artextract predict --model {run} PAINTINGS...")


@app.command()
def compare(
    paths: Annotated[list[Path], typer.Argument(
        metavar="RUN_OR_EVAL", help="Evaluated RUN folders (their eval/) or EVAL folders; several runs of one model "
                                    "that differ only in their seed as one comma-separated argument (RUN_S0,RUN_S1,"
                                    "RUN_S2): averaged, with the seeds' variance in the verdicts.")],
    output: Annotated[Path | None, typer.Option("--output", help="Also write the comparison here (.md or .json).")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of the paired bootstrap.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """One table across runs, and paired tests of accuracy and macro-F1 (over seeds, Holm-corrected) for models
    scored on the same images."""
    import json

    from artextract.core.atomic import write_text
    from artextract.core.progress import setup_logging
    from artextract.stages.compare import compare as run_comparison
    from artextract.stages.compare import render_markdown

    setup_logging(verbose)
    check_output_file(output, force)  # before the work, not after it
    result = run_comparison(paths, seed=seed)
    text = render_markdown(result)
    typer.echo(text, nl=False)
    if output is not None:
        write_text(output, json.dumps(result, indent=2) + "\n" if output.suffix == ".json" else text)


@app.command()
def predict(
    paths: ImagesArgument,
    model: ModelOption,
    top_k: Annotated[int, typer.Option("--top-k", help="Classes to list per task.")] = 5,
    format_: FormatOption = None,
    output: OutputOption = None,
    cam: Annotated[Path | None, typer.Option("--cam", help="Write Grad-CAM overlays of the top class into this "
                                                            "new or empty folder.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    workers: Annotated[int, typer.Option(help="Decoding processes (0 = in this process).")] = 0,
    device: DeviceOption = "auto",
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output, write into a non-empty --cam.")]
    = False,
    uncalibrated: Annotated[bool, typer.Option("--uncalibrated", help="Plain softmax probabilities, without the "
                                                                      "temperatures fitted on the selection set.")]
    = False,
    verbose: VerboseOption = False,
) -> None:
    """Top-k artists, styles and genres with probabilities for new paintings."""
    from artextract.core.outdir import prepare_output_dir
    from artextract.core.progress import setup_logging
    from artextract.predictor import check_predict_arguments
    from artextract.stages.predict import format_predictions, load_model, output_format

    setup_logging(verbose)
    format_ = output_format(format_, output)
    check_predict_arguments(top_k, batch_size, workers)
    check_output_file(output, force)  # before the work, not after it
    items = image_inputs(paths)
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
    emit(format_predictions(results, format_), output, f"the predictions of {len(results)} images")
    if cam is not None:
        typer.echo(f"artextract: heat maps in {cam}", err=True)
    if not any(r["status"] == "ok" for r in results):
        raise ArtExtractError(f"none of the {len(results)} images could be predicted (reasons above)")


@app.command()
def similar(
    paths: ImagesArgument,
    model: ModelOption,
    index: Annotated[Path | None, typer.Option("--index", help="EVAL folder whose paintings are searched (default: "
                                                               "the run's own, RUN/eval), or a DATA folder: all its "
                                                               "paintings, predicted once into RUN/similar-data/.")]
    = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Similar paintings to list per image.")] = 8,
    format_: FormatOption = None,
    output: OutputOption = None,
    device: DeviceOption = "auto",
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """The most similar paintings of an evaluated collection (cosine similarity of the model's embedding)."""
    from artextract.core.progress import setup_logging
    from artextract.predictor import check_predict_arguments
    from artextract.stages.predict import format_similar, load_model, output_format

    setup_logging(verbose)
    format_ = output_format(format_, output)
    check_predict_arguments(top_k, 1, 0)
    check_output_file(output, force)  # before the work, not after it
    items = image_inputs(paths)
    results = load_model(model, device).similar(items, top_k, index)
    for result in results:
        if result["status"] != "ok":
            typer.echo(f"artextract: skipped {result['source']}: {result['status']}", err=True)
    emit(format_similar(results, format_), output, f"the similar paintings of {len(results)} images")
    if not any(r["status"] == "ok" for r in results):
        raise ArtExtractError(f"none of the {len(results)} images could be searched (reasons above)")


@app.command()
def demo(
    out: Annotated[Path, typer.Argument(
        metavar="OUT", help="Folder for the whole demo (dataset, DATA, RUN, report).")]
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
    print_next(f"artextract predict --model {out / 'run'} {out / 'synth' / 'wikiart'}")
    print_next(f"artextract serve {out / 'run'}")
