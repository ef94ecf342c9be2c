"""`artextract train` and `artextract ablate`: the models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artextract.cli.app import ConfigArgs, app, print_next, with_config
from artextract.cli.flags import config_flag, given
from artextract.stages.ablate_variants import variants_help


@app.command()
@with_config
def train(
    out: Annotated[Path, typer.Option("--out", help="RUN folder to write.")],
    data: Annotated[Path | None, typer.Option("--data", help="DATA folder written by `artextract prepare` "
                                                             "(with --resume: the run's own, by default).")] = None,
    tasks: config_flag("model.tasks") = None,
    backbone: config_flag("model.backbone") = None,
    weights: config_flag("model.weights") = None,
    reader: config_flag("model.reader") = None,
    epochs: config_flag("train.epochs") = None,
    batch_size: config_flag("train.batch_size") = None,
    image_size: config_flag("train.image_size") = None,
    devices: config_flag("train.devices") = None,
    num_nodes: config_flag("train.num_nodes") = None,
    precision: config_flag("train.precision") = None,
    compile_: config_flag("train.compile") = None,
    freeze_backbone: config_flag("train.freeze_backbone") = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last.pt.")] = False,
    *,
    args: ConfigArgs,
) -> None:
    """Train a convolutional-recurrent classifier on a prepared DATA folder (one GPU, several, or the CPU)."""
    from artextract.errors import ArtExtractError
    from artextract.layout import DataFolder

    flags = given("model", tasks=tasks, backbone=backbone, weights=weights, reader=reader)
    flags |= given("train", epochs=epochs, batch_size=batch_size, image_size=image_size, devices=devices,
                   num_nodes=num_nodes, precision=precision, compile=compile_, freeze_backbone=freeze_backbone)
    base = None
    if resume:  # the run's own config, then any file, --set and flags given now (e.g. more epochs)
        from artextract.stages.train import saved_config

        base = saved_config(out)
    # The settings and DATA are checked before torch loads (seconds on a busy machine): a mistake answers at once.
    cfg = args.resolve(("model", "train"), flags, base=base)
    if data is None and not resume:
        raise ArtExtractError("--data is missing: pass the DATA folder written by `artextract prepare` (only "
                              "--resume takes the run's own)")
    if data is not None:
        prepared = DataFolder(data)
        prepared.require_prepared()
        prepared.require_tasks(list(cfg.model.tasks))
    from artextract.stages.train import train as run_training

    result = run_training(data, out, cfg, resume=resume, force=args.force)
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
@with_config
def ablate(
    data: Annotated[Path, typer.Option("--data", help="DATA folder written by `artextract prepare`.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the runs and the table (rerunning reuses "
                                                    "finished runs).")],
    variants: Annotated[str, typer.Option(help=variants_help())]
    = "gap,gru-rows,gru-cols,gru-snake,gru-2d,lstm-rows,gru-rows-attention",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; each variant trains once per seed.")] = "0,1,2",
    folds: Annotated[int, typer.Option(min=0, max=100, help="K >= 2: score by K-fold cross-validation over the "
                                       "train and selection splits (K runs per variant and seed, every training "
                                       "painting scored once); 0: score on the selection split.")] = 0,
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="Add the linear probe (logistic regression on "
                                        "the first variant's pooled features) to the table.")] = True,
    pairs: Annotated[str, typer.Option(help="Comma-separated A:B pairs of variants to test (B against A, over the "
                                            "seeds, Holm-corrected over the table); by default each variant "
                                            "against gap (or the first variant).")] = "",
    *,
    args: ConfigArgs,
) -> None:
    """Compare the readers (GAP, GRU/LSTM scans, attention) on frozen-backbone features, with a linear probe."""
    from artextract.stages.ablate import ablate as run_ablation
    from artextract.stages.ablate import parse_seeds, parse_variants
    from artextract.stages.ablate_table import parse_pairs

    cfg = args.resolve(("model", "train"))
    names = parse_variants(variants)
    result = run_ablation(data, out, cfg, names, parse_seeds(seeds), force=args.force, folds=folds,
                          probe=probe, pairs=parse_pairs(pairs, names))
    typer.echo(result.markdown, nl=False)
    typer.echo(f"table: {result.out / 'ablation.md'}")


@app.command()
@with_config
def audit(
    data: Annotated[Path, typer.Option("--data", help="DATA folder written by `artextract prepare`.")],
    out: Annotated[Path, typer.Option("--out", help="AUDIT folder for the fold runs and the ranked label issues "
                                                    "(rerunning reuses finished fold runs).")],
    folds: Annotated[int, typer.Option(min=2, max=100, help="K: K models, each trained on K-1 folds of the training "
                                       "paintings; each painting is judged by the model that did not see it.")] = 5,
    rank_by: Annotated[str, typer.Option(help="The score that orders the CSVs: joint (the default, validated in "
                                              "docs/label-audit.md), or another of the project's or cleanlab's "
                                              "(e.g. cleanlab_normalized_margin, better at plausible mix-ups of "
                                              "painters and genres).")] = "joint",
    tasks: config_flag("model.tasks") = None,
    epochs: config_flag("train.epochs") = None,
    *,
    args: ConfigArgs,
) -> None:
    """Find the training labels that are probably wrong: out-of-fold predictions, ranked (and cleanlab's verdict)."""
    from artextract.stages.audit import audit as run_audit

    cfg = args.resolve(("model", "train"), given("model", tasks=tasks) | given("train", epochs=epochs))
    result = run_audit(data, out, cfg, folds=folds, force=args.force, rank_by=rank_by)
    for task, figures in result.record["per_task"].items():
        groups = figures["conflicting_duplicate_groups"]
        typer.echo(f"{task}: {figures['flagged']:,} of {figures['paintings']:,} labels flagged "
                   f"(Confident Learning's estimate); {groups['count']} duplicate paintings with conflicting labels "
                   f"listed beside them -> {result.out / f'label_issues_{task}.csv'}")
    typer.echo(f"summary: {result.out / 'audit.md'}")
    print_next(f"review the CSVs (action: keep, relabel or drop; new_label), then artextract prepare ... --out {data} "
               f"--overrides {result.out / 'label_issues_<task>.csv'}, and train again")
