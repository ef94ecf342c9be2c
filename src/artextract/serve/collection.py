"""What `artextract serve` shows: an evaluated collection read once from RUN, its EVAL folder and the DATA folder
that evaluation scored (recognised by content: engine/provenance.py), never written (the similarity index aside,
which lives in EVAL and falls back to memory when EVAL is read-only).

Paintings are addressed by their row in predictions.parquet, an integer: no request ever names a file, so nothing
outside the collection can be served. Images come from DATA's cache (the squares the model saw).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from artextract.data.cache_files import open_cache
from artextract.engine.provenance import scored_data
from artextract.errors import ArtExtractError
from artextract.layout import DataFolder, EvalFolder, RunFolder
from artextract.serve.checks import check_predictions, read_metrics, read_outliers

PAGE_SIZE = 60
SORTS = ("confidence", "-confidence", "outlier", "similar")


@dataclass(frozen=True)
class Query:
    """The collection page's state, as its URL holds it."""

    task: str
    true: str = ""  # class name, or "" for any
    pred: str = ""
    correct: str = ""  # "yes", "no" or ""
    flagged: bool = False
    noise: bool = False
    sort: str = "outlier"
    like: int = -1  # row of the painting to sort by similarity to
    page: int = 1

    @classmethod
    def parse(cls, params: dict[str, str], tasks: list[str]) -> Query:
        """From query parameters; unknown values fall back to the defaults rather than failing the page."""
        task = params.get("task", tasks[0])
        task = task if task in tasks else tasks[0]

        def number(name: str, default: int) -> int:
            try:
                return int(params.get(name, default))
            except ValueError:
                return default

        sort = params.get("sort", "outlier")
        return cls(task, params.get("true", ""), params.get("pred", ""),
                   params.get("correct", "") if params.get("correct") in ("yes", "no") else "",
                   params.get("flagged") == "yes", params.get("noise") == "yes",
                   sort if sort in SORTS else "outlier", number("like", -1), max(1, number("page", 1)))


@dataclass
class Collection:
    run: RunFolder
    evaluation: EvalFolder
    data: DataFolder
    predictions: pd.DataFrame
    classes: dict[str, list[str]]
    outliers: pd.DataFrame
    metrics: dict[str, Any]
    issues: Any = None  # serve/label_issues.LabelIssues of the run's DATA, when served with --audit
    _thumbnails: dict[tuple[int, int], bytes] = field(default_factory=dict)
    _heatmaps: dict[tuple[int, str], bytes] = field(default_factory=dict)
    _views: dict[str, pd.DataFrame] = field(default_factory=dict)

    @classmethod
    def open(cls, run: Path, data: Path | None = None, audit: Path | None = None) -> Collection:
        folder = RunFolder(Path(run))
        folder.require_model()
        evaluation = EvalFolder(folder.default_eval)
        if not evaluation.predictions.is_file():
            raise ArtExtractError(f"{run} has not been evaluated ({evaluation.predictions} missing): run "
                                  f"`artextract evaluate --run {run}` first")
        predictions, classes = evaluation.read_predictions()
        # The images of the DATA folder the evaluation scored, recognised by content: a row's cache index means
        # nothing in another folder's cache (run.json names the DATA it trained on, which may be another).
        info = scored_data(evaluation, None if data is None else Path(data))
        data_folder = info.folder
        # Checked now, so that a damaged file is one line at start-up rather than 500 pages later.
        check_predictions(predictions, evaluation.predictions, len(info.manifest), Path(run))
        outliers = read_outliers(evaluation.outliers, Path(run))
        metrics = read_metrics(evaluation.metrics, classes, Path(run))
        issues = None
        if audit is not None:
            from artextract.serve.label_issues import LabelIssues

            issues = LabelIssues.open(Path(audit), data_folder, data_folder.read_classes())
        return cls(folder, evaluation, data_folder, predictions.reset_index(drop=True), classes, outliers, metrics,
                   issues)

    @property
    def tasks(self) -> list[str]:
        return list(self.classes)

    @cached_property
    def temperature(self) -> dict[str, float]:
        """The model's temperatures, fitted on the selection set: the app shows calibrated probabilities, as
        `predict` does (predictions.parquet keeps the plain softmax)."""
        from artextract.engine.checkpoint import read_model_metadata

        return read_model_metadata(self.run.model).temperature

    def probabilities(self, rows: pd.DataFrame, task: str) -> np.ndarray:
        """Calibrated class probabilities of `rows` (of predictions.parquet) for `task`."""
        from artextract.analysis.probabilities import softmax

        return softmax(np.stack(rows[f"logits_{task}"].to_numpy()), self.temperature.get(task, 1.0))

    def top(self, row: int, task: str, k: int = 5) -> list[tuple[str, float]]:
        """The `k` most probable classes of a painting for `task`, calibrated."""
        from artextract.analysis.probabilities import top_k

        indices, probabilities = top_k(self.probabilities(self.predictions.iloc[[row]], task), k)
        return [(self.classes[task][i], float(p)) for i, p in zip(indices[0], probabilities[0], strict=True)]

    @cached_property
    def images(self) -> np.ndarray:
        return open_cache(self.data.cache)

    @cached_property
    def index(self) -> Any:
        from artextract.similar import open_index

        return open_index(self.evaluation.root, self.run.model)

    @cached_property
    def predictor(self) -> Any:
        from artextract.predictor import load_model

        return load_model(self.run.model, "auto")

    def row(self, row: int) -> pd.Series:
        if not 0 <= row < len(self.predictions):
            raise KeyError(row)
        return self.predictions.iloc[row]

    def square(self, row: int) -> np.ndarray:
        """The cached uint8 square of a painting."""
        return np.array(self.images[int(self.row(row)["cache_index"])])  # a copy: torch wants writable memory

    def jpeg(self, row: int, side: int) -> bytes:
        """The painting as a JPEG of at most `side` pixels (thumbnails are kept: a grid page asks for 60)."""
        return self.cache_jpeg(int(self.row(row)["cache_index"]), side)

    def audited_jpeg(self, cache_index: int, side: int) -> bytes:
        """A painting of the label audit, by its row in DATA's cache: only the rows the audit lists."""
        if self.issues is None or cache_index not in self.issues.cache_rows:
            raise KeyError(cache_index)
        return self.cache_jpeg(cache_index, side)

    def cache_jpeg(self, cache_index: int, side: int) -> bytes:
        from PIL import Image

        key = (cache_index, side)
        if key not in self._thumbnails:
            picture = Image.fromarray(np.array(self.images[cache_index]))
            picture.thumbnail((side, side))
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=85)
            if len(self._thumbnails) > 20_000:  # bounded memory: about 100 MB of thumbnails at most
                self._thumbnails.clear()
            self._thumbnails[key] = buffer.getvalue()
        return self._thumbnails[key]

    def heatmap_png(self, row: int, task: str, lock: Any) -> bytes:
        """Grad-CAM of the predicted class (the one the page shows, from predictions.parquet: no forward pass to
        find it again) over the painting, computed on first request (under `lock`: one pass at a time) and kept."""
        key = (row, task)
        if key not in self._heatmaps:
            square = self.square(row)
            with lock:
                png = self.predictor.overlays(square, {task: int(self.row(row)[f"pred_{task}"])})[task]
            if len(self._heatmaps) > 2_000:  # bounded memory
                self._heatmaps.clear()
            self._heatmaps[key] = png
        return self._heatmaps[key]

    def task_view(self, task: str) -> pd.DataFrame:
        """One row per painting of the scored split labelled for `task` (predictions.parquet also holds the
        selection paintings that fitted the temperatures): names, correctness, confidence, outlier score, flags.
        Built once per task: the collection never changes while it is served."""
        if task not in self._views:
            self._views[task] = self._task_view(task)
        return self._views[task]

    def _task_view(self, task: str) -> pd.DataFrame:
        names = self.classes[task]
        scored = self.predictions["split"] == self.metrics.get("split", "eval")
        frame = self.predictions[scored & (self.predictions[f"label_{task}"] >= 0)]
        view = pd.DataFrame({
            "row": frame.index, "path": frame["path"],
            "true": [names[i] for i in frame[f"label_{task}"]], "pred": [names[i] for i in frame[f"pred_{task}"]],
            "confidence": self.probabilities(frame, task).max(axis=1) if len(frame) else []})
        view["correct"] = view["true"] == view["pred"]
        scores = self.outliers[self.outliers["task"] == task] if len(self.outliers) else self.outliers
        by_path = scores.set_index("path") if len(scores) else pd.DataFrame()
        view["outlier"] = view["path"].map(by_path["score_combined"]) if len(by_path) else np.nan
        view["flagged"] = view["path"].map(by_path["flagged"]).fillna(False).astype(bool) if len(by_path) else False
        noisy = "injected_noise" in by_path.columns
        view["noise"] = view["path"].map(by_path["injected_noise"]).fillna(False).astype(bool) if noisy else False
        # The label the noise test gave it (the report's "label"), beside the true one the card shows.
        view["noise_label"] = view["path"].map(by_path["label_name"]) if noisy and "label_name" in by_path else ""
        return view

    def select(self, query: Query) -> tuple[pd.DataFrame, int]:
        """(this page's rows, total matching) for a collection query."""
        view = self.task_view(query.task)
        if query.true:
            view = view[view["true"] == query.true]
        if query.pred:
            view = view[view["pred"] == query.pred]
        if query.correct:
            view = view[view["correct"] == (query.correct == "yes")]
        if query.flagged:
            view = view[view["flagged"]]
        if query.noise:
            view = view[view["noise"]]
        if query.sort == "similar" and 0 <= query.like < len(self.predictions):
            similarity = self.index.vectors[view["row"].to_numpy()] @ self.index.vectors[query.like]
            view = view.assign(similarity=similarity).sort_values("similarity", ascending=False, kind="stable")
        elif query.sort in ("confidence", "-confidence"):
            view = view.sort_values("confidence", ascending=query.sort == "confidence", kind="stable")
        else:
            view = view.sort_values("outlier", ascending=False, kind="stable", na_position="last")
        start = (query.page - 1) * PAGE_SIZE
        return view.iloc[start:start + PAGE_SIZE], len(view)

    def nearest(self, row: int, k: int = 8) -> list[Any]:
        """The `k` paintings most similar to painting `row` (itself excluded)."""
        embedding = self.index.vectors[row][None]
        return self.index.search(embedding, k, skip_self=np.array([row]))[0]
