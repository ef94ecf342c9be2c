"""Which paintings a run has seen, by content: recorded when it starts training, checked whenever it is scored.

A run learns from its training split and chooses its epoch, temperature and thresholds on its selection split;
scoring either as held out overstates it. Paths cannot tell: DATA prepared again (say with --test-fraction) moves
images between splits, and another DATA folder can hold the same files under other names. So the run records the
SHA-256 of every image it trained or selected on (with the copies `prepare` merged into them), and `evaluate`
leaves out of the scored split whatever it finds there, and says how many.
"""

from __future__ import annotations

import pandas as pd

from artextract.core.atomic import write_with
from artextract.core.progress import log
from artextract.engine.data import DataInfo
from artextract.errors import ArtExtractError
from artextract.layout import RunFolder

SEEN_SPLITS = ("train", "select")


def seen_images(info: DataInfo) -> pd.DataFrame | None:
    """(content_sha256, split) of every image of DATA (as the run sees it: its fold, if any) that a run trains
    or selects on, and of their copies; None when DATA predates content digests (prepare it again to record)."""
    manifest = info.manifest
    if "content_sha256" not in manifest.columns:
        return None
    used = manifest[manifest["split"].isin(SEEN_SPLITS) & (manifest["status"] == "ok")]
    split_of_group = used[used["duplicate_group"] >= 0].set_index("duplicate_group")["split"]
    copies = manifest[(manifest["status"] == "duplicate") & manifest["duplicate_group"].isin(split_of_group.index)]
    copies = pd.DataFrame({"content_sha256": copies["content_sha256"],
                           "split": copies["duplicate_group"].map(split_of_group)})
    seen = pd.concat([used[["content_sha256", "split"]], copies], ignore_index=True)
    return seen[seen["content_sha256"].astype(str).str.len() > 0].drop_duplicates().reset_index(drop=True)


def record_seen(run: RunFolder, info: DataInfo) -> None:
    seen = seen_images(info)
    if seen is not None:
        write_with(run.seen, lambda tmp: seen.astype(str).to_parquet(tmp, index=False))


def read_seen(run: RunFolder) -> pd.DataFrame | None:
    """The run's record, or None for a run trained before runs recorded it (or on DATA without digests)."""
    if not run.seen.is_file():
        return None
    try:
        seen = pd.read_parquet(run.seen)
        if list(seen.columns) != ["content_sha256", "split"]:
            raise ValueError("columns")
    except (OSError, ValueError) as error:
        raise ArtExtractError(f"{run.seen} is damaged ({error}); it records which images the run trained on, so "
                              "the run cannot be scored as held out without it: train the run again") from None
    return seen


def leave_out_seen(rows: pd.DataFrame, seen: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """`rows` (with content_sha256 and split) less the images the run has seen in a way that matters for their
    split: for the held-out split (eval) anything it trained or selected on; for the selection split (scored
    only when there is no eval split, and said to be no held-out figure) what it trained on. Returns the rows
    kept and the count left out per split."""
    trained = set(seen.loc[seen["split"] == "train", "content_sha256"])
    either = set(seen["content_sha256"])
    digests = rows["content_sha256"].astype(str)
    drop = digests.isin(trained) | ((rows["split"] != "select") & digests.isin(either))
    counts = rows.loc[drop, "split"].value_counts()
    return rows[~drop], {str(split): int(n) for split, n in counts.items()}


def guard_scored_rows(run: RunFolder, rows: pd.DataFrame, split: str, data: object) -> tuple[pd.DataFrame,
                                                                                              dict[str, int] | None]:
    """The rows `evaluate` may score as the run's `split`, and the counts left out (None: not checked)."""
    seen = read_seen(run)
    if seen is None or "content_sha256" not in rows.columns:
        log.warning("evaluate: %s does not record the images it trained on (trained by an earlier version, or on "
                    "DATA without content digests), so whether %s overlaps them cannot be checked; train it again "
                    "to be sure its figures are held out", run.root, data)
        return rows, None
    kept, left_out = leave_out_seen(rows, seen)
    for name, count in left_out.items():
        log.warning("evaluate: left out %d of the %d %s images of %s: the run trained%s on the same files (by "
                    "content; DATA prepared again with other splits, or another folder holding its images)", count,
                    int((rows["split"] == name).sum()), name, data, "" if name == "select" else " or selected")
    if not (kept["split"] == split).any():
        raise ArtExtractError(f"every {split} image of {data} is one that {run.root} trained or selected on: no "
                              "held-out figure can be computed. Evaluate on DATA the run never saw")
    return kept, left_out
