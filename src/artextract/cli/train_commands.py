"""`artextract train` and `artextract ablate`: the models."""

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
    resolve_config,
)
from artextract.errors import ArtExtractError
from artextract.models.readers import reader_help


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="RUN folder to write.")],
    data: Annotated[Path | None, typer.Option("--data", help="DATA folder written by `artextract prepare` "
                                                             "(with --resume: the run's own, by default).")] = None,
    tasks: Annotated[str | None, typer.Option(
        help=config_help("model.tasks", "Comma-separated tasks: artist,style,genre."))] = None,
    backbone: Annotated[str | None, typer.Option(
        help=config_help("model.backbone", "timm model name, e.g. resnet18."))] = None,
    weights: Annotated[str | None, typer.Option(
        help=config_help("model.weights", "none, imagenet, or a .safetensors/.pth file."))] = None,
    reader: Annotated[str | None, typer.Option(
        help=config_help("model.reader", reader_help() + "."))] = None,
    epochs: Annotated[int | None, typer.Option(help=config_help("train.epochs", "Number of epochs."))] = None,
    batch_size: Annotated[int | None, typer.Option(
        help=config_help("train.batch_size", "Images per device per step."))] = None,
    image_size: Annotated[int | None, typer.Option(
        help=config_help("train.image_size", "Side of the crops fed to the model."))] = None,
    devices: Annotated[str | None, typer.Option(
        help=config_help("train.devices", "auto, a count, or a list such as 0,1."))] = None,
    num_nodes: Annotated[int | None, typer.Option(
        help=config_help("train.num_nodes", "Machines taking part (DDP)."))] = None,
    precision: Annotated[str | None, typer.Option(
        help=config_help("train.precision", "auto, 32-true, bf16-mixed or 16-mixed."))] = None,
    compile_: Annotated[bool | None, typer.Option("--compile/--no-compile",
        help=config_help("train.compile", "torch.compile the model."))]
    = None,
    freeze_backbone: Annotated[bool | None, typer.Option("--freeze-backbone/--no-freeze-backbone",

        help=config_help("train.freeze_backbone", "Train only the reader and heads, from the backbone's "
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

    overrides = overrides_for("model", None, tasks=tasks, backbone=backbone, weights=weights, reader=reader)
    overrides += overrides_for("train", set_, epochs=epochs, batch_size=batch_size, image_size=image_size,
                            devices=devices, num_nodes=num_nodes, precision=precision, compile=compile_,
                            freeze_backbone=freeze_backbone)
    saved = RunFolder(out).config
    if resume and not saved.is_file():
        raise ArtExtractError(f"{out} holds no run to resume ({saved.name} missing)")
    # On --resume: the run's own config, then any file and --set given now (e.g. more epochs).
    cfg = resolve_config(verbose, config, overrides, ("model", "train"), print_config,
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
        print_next(f"artextract evaluate --run {out}" if not result.interrupted
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

    cfg = resolve_config(verbose, config, list(set_ or []), ("model", "train"), print_config)
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
