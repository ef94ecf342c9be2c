"""Similar paintings: an index of an evaluated collection's embeddings, and the search behind `artextract similar`,
`Predictor.similar` and the explorer.

The index lives beside the evaluation, `EVAL/similar/<key>/`: `vectors.f16` (N x D float16, unit rows,
memory-mapped), `rows.parquet` (path, split, cache index, label and prediction names per task) and `index.json`.
The key digests the model file and predictions.parquet, so that a changed model or DATA (either rewrites the
predictions) is never answered from an old index: a stale one is rebuilt, and the old folder removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from artextract.analysis.similarity import nearest, unit_rows
from artextract.core.atomic import write_json, write_with
from artextract.core.lock import folder_lock
from artextract.core.progress import log
from artextract.core.records import file_digest
from artextract.engine.provenance import require_same_model
from artextract.errors import ArtExtractError
from artextract.layout import DataFolder, EvalFolder, RunFolder

VECTORS_FILE, ROWS_FILE, INDEX_FILE = "vectors.f16", "rows.parquet", "index.json"


@dataclass(frozen=True)
class Neighbour:
    row: int  # in the index, i.e. in the predictions.parquet it was built from
    path: str
    similarity: float
    split: str
    cache_index: int
    labels: dict[str, str]  # task -> true class name ("" when the painting has no label for the task)
    predicted: dict[str, str]  # task -> the model's top class

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "path": self.path, "similarity": round(self.similarity, 4), "split": self.split,
                "cache_index": self.cache_index, "labels": self.labels, "predicted": self.predicted}


class SimilarityIndex:
    """The evaluated paintings' embeddings, unit length; `search` finds the nearest by cosine similarity."""

    def __init__(self, folder: Path, rows: pd.DataFrame, vectors: np.ndarray) -> None:
        self.folder, self.rows = folder, rows
        # Searched in float32: numpy has no fast float16 product, and 81k x 512 floats are 167 MB.
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.tasks = [c.removeprefix("label_") for c in rows.columns if c.startswith("label_")]

    def __len__(self) -> int:
        return len(self.rows)

    def search(self, embeddings: np.ndarray, k: int = 8, skip_self: np.ndarray | None = None,
               ) -> list[list[Neighbour]]:
        """The `k` nearest indexed paintings of each embedding (N x D, the model's pooled embedding), most similar
        first; `skip_self[i]` is the row of query i in the index, not to be returned (-1: none)."""
        if k < 1:
            raise ArtExtractError(f"--top-k must be at least 1, got {k}")
        embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if embeddings.shape[1] != self.vectors.shape[1]:
            raise ArtExtractError(f"embeddings of width {embeddings.shape[1]} cannot be searched in {self.folder} "
                                  f"(width {self.vectors.shape[1]}): the index belongs to another model")
        found, scores = nearest(unit_rows(embeddings), self.vectors, k, skip=skip_self)
        return [[self._neighbour(int(i), float(s)) for i, s in zip(row_i, row_s, strict=True)]
                for row_i, row_s in zip(found, scores, strict=True)]

    def _neighbour(self, row: int, similarity: float) -> Neighbour:
        record = self.rows.iloc[row]
        return Neighbour(row, str(record["path"]), similarity, str(record["split"]), int(record["cache_index"]),
                         {t: str(record[f"label_{t}"]) for t in self.tasks},
                         {t: str(record[f"pred_{t}"]) for t in self.tasks})


def index_key(evaluation: EvalFolder, model_digest: str) -> str:
    """Changes whenever the indexed embeddings would: another model file or other predictions."""
    digest = hashlib.sha256(f"{model_digest}\n{file_digest(evaluation.predictions)}\n".encode())
    return digest.hexdigest()[:16]


def open_index(collection: Path, model_file: Path) -> SimilarityIndex:
    """The index of `collection` for `model_file`, built on first use: an EVAL folder (the paintings `evaluate`
    scored), or a DATA folder (every usable painting; the model's predictions for them are computed once, into
    RUN/similar-data/<key>/). A folder that cannot be written (read-only) gets an index in memory."""
    collection = Path(collection)
    if DataFolder(collection).manifest.is_file():
        collection = _predictions_of_data(collection, model_file)
    folder = EvalFolder(collection)
    if not folder.predictions.is_file():
        raise ArtExtractError(f"{folder.root} holds no {folder.predictions.name}: pass an EVAL folder written by "
                              "`artextract evaluate` (RUN/eval by default) or a DATA folder written by "
                              "`artextract prepare`")
    model_digest = file_digest(model_file)
    require_same_model(folder, model_file, model_digest)
    target = folder.similar / index_key(folder, model_digest)
    stored = _stored_index(target)
    if isinstance(stored, SimilarityIndex):
        return stored
    # Derived data: damaged or edited, it is rebuilt from the predictions, never searched. (Without index.json it
    # is one being written, or one a kill interrupted: rebuilt, or waited for, without a warning.)
    if (target / INDEX_FILE).exists():
        log.warning("similar: the index in %s is damaged (%s); building it again", target, stored)
    rows, vectors = _index_rows(folder)
    try:
        with folder_lock(folder.root):  # one writer; a second process waits for the lock, then reuses the index
            if not isinstance(_stored_index(target), SimilarityIndex):
                shutil.rmtree(target, ignore_errors=True)
                _write(target, rows, vectors)
    except OSError as err:
        log.warning("similar: cannot store the index in %s (%s); searching an index in memory", target,
                    err.strerror or err)
        return SimilarityIndex(target, rows, vectors)
    stored = _stored_index(target)
    if not isinstance(stored, SimilarityIndex):  # changed again while it was being written
        raise ArtExtractError(f"the index in {target} was damaged as soon as it was written ({stored}): is another "
                              "program changing files there?")
    return stored


def _stored_index(target: Path) -> SimilarityIndex | str:
    """The index stored in `target`, or why it cannot be used: its files are checked against the size and the
    digests index.json recorded, so that a cut, edited or replaced file is never searched."""
    try:
        info = json.loads((target / INDEX_FILE).read_text(encoding="utf-8"))
        count, width = int(info["count"]), int(info["width"])
        if count < 0 or width < 1 or (target / VECTORS_FILE).stat().st_size != count * width * 2:
            return f"{VECTORS_FILE} does not hold the {count} x {width} vectors {INDEX_FILE} records"
        for name in (VECTORS_FILE, ROWS_FILE):
            if file_digest(target / name) != info[f"{name.split('.')[0]}_sha256"]:
                return f"{name} changed since it was written"
        rows = pd.read_parquet(target / ROWS_FILE)
    except FileNotFoundError as err:
        return f"{Path(err.filename or '').name or 'a file'} is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:  # garbage JSON or parquet, wrong types
        return f"unreadable: {type(err).__name__}"
    if len(rows) != count:
        return f"{ROWS_FILE} holds {len(rows)} paintings, not {count}"
    return SimilarityIndex(target, rows, np.memmap(target / VECTORS_FILE, dtype=np.float16, mode="r",
                                                   shape=(count, width)))


def _predictions_of_data(data: Path, model_file: Path) -> Path:
    """An EVAL-shaped folder with the model's predictions for every usable painting of DATA, computed once per
    model file and DATA contents (keyed like the feature cache)."""
    from artextract.engine.data import data_key, load_data_folder
    from artextract.stages.evaluate import predict_split

    run = RunFolder(model_file.parent)
    key = hashlib.sha256(f"{file_digest(model_file)}\n{data_key(load_data_folder(data))}\n".encode()).hexdigest()[:16]
    folder = EvalFolder(run.root / "similar-data" / key)
    if not folder.predictions.is_file():
        log.info("similar: predicting every painting of %s once, into %s", data, folder.root)
        folder.root.mkdir(parents=True, exist_ok=True)
        with folder_lock(folder.root):
            if not folder.predictions.is_file():
                predict_split(run, data, "all", folder, 256, "auto", every_split=True)
    return folder.root


def _index_rows(folder: EvalFolder) -> tuple[pd.DataFrame, np.ndarray]:
    """(path, split, cache index, label and prediction names per task) and unit float16 embeddings, per painting."""
    predictions, classes = folder.read_predictions()
    log.info("similar: indexing the embeddings of %d paintings of %s", len(predictions), folder.root)
    rows = predictions[["path", "split", "cache_index"]].copy()
    for task, names in classes.items():
        rows[f"label_{task}"] = [names[i] if i >= 0 else "" for i in predictions[f"label_{task}"].astype(int)]
        rows[f"pred_{task}"] = [names[i] for i in predictions[f"pred_{task}"].astype(int)]
    return rows, unit_rows(np.stack(predictions["embedding"].to_numpy())).astype(np.float16)


def _write(target: Path, rows: pd.DataFrame, vectors: np.ndarray) -> None:
    for stale in (target.parent.iterdir() if target.parent.is_dir() else []):
        if stale.is_dir() and stale.name != target.name:
            shutil.rmtree(stale, ignore_errors=True)  # another model's or other predictions' index
    write_with(target / VECTORS_FILE, vectors.tofile)
    write_with(target / ROWS_FILE, lambda tmp: rows.to_parquet(tmp, index=False))
    # Written last: its presence says the folder is complete.
    write_json(target / INDEX_FILE, {"count": len(rows), "width": int(vectors.shape[1]),
                                     "vectors_sha256": file_digest(target / VECTORS_FILE),
                                     "rows_sha256": file_digest(target / ROWS_FILE)})
