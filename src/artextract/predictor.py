"""Classify new paintings with a trained `model.safetensors`: the Python API (`artextract predict` formats it).

    >>> import artextract
    >>> model = artextract.load_model("RUN/model.safetensors")
    >>> model.predict(["painting.jpg"], top_k=3)
    [{'source': 'painting.jpg', 'status': 'ok', 'predictions': {'artist': [{'class': 'Claude_Monet', ...}]}}]

Images go through the model's own `Preprocessing` (decoded to the cache's square as `prepare` does, then the
evaluation view) and the shared inference loop, so a painting gets the same prediction here as in `evaluate`.
"""

from __future__ import annotations

import contextlib
import glob
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from artextract.analysis.probabilities import softmax
from artextract.analysis.probabilities import top_k as top_classes
from artextract.core.progress import Progress, log
from artextract.core.safe_text import slug
from artextract.data.decode import SkipImage
from artextract.data.synth.generate import SYNTH_RECORD
from artextract.engine.checkpoint import load_model_file, refuse_pickled, synthetic_warning
from artextract.engine.inference import forward_batches
from artextract.engine.preprocessing import ImageInput, Preprocessing
from artextract.engine.runtime import Runtime
from artextract.errors import ArtExtractError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".jfif"}


@dataclass
class Prediction:
    source: str
    status: str = "ok"  # "ok", or why the image could not be used
    predictions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    warning: str = ""  # why the model may not be able to judge this image (too small, a thin strip)
    calibrated: bool = True  # probabilities through the model's fitted temperatures
    embedding: np.ndarray | None = field(default=None, repr=False)  # the pooled embedding (similarity search)
    # Tasks whose top calibrated probability is below the model's open-set threshold: the painting looks like none
    # of the classes it was trained on (a painter, style or genre it never saw), whatever the top class says.
    unknown: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "status": self.status, "warning": self.warning,
                "calibrated": self.calibrated, "predictions": self.predictions, "unknown": self.unknown}


def expand_inputs(arguments: Sequence[str | Path]) -> list[str]:
    """Files named directly, image files found recursively in folders, and glob matches, in order."""
    found: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            # Not is_file(): a FIFO, a symlink loop or a dangling link with an image name is listed, so that it is
            # reported as skipped with its reason, as it is when named on the command line.
            found += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
        elif path.exists() or not glob.has_magic(str(argument)):
            found.append(str(argument))  # a missing file is reported, not dropped
        else:
            found += sorted(glob.glob(str(argument), recursive=True))
    return found


class _Decoded(torch.utils.data.Dataset):
    def __init__(self, items: Sequence[ImageInput], preprocessing: Preprocessing) -> None:
        self.items, self.preprocessing = items, preprocessing

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, str, str]:
        """(index, square or None, status, warning)."""
        try:
            square, width, height = self.preprocessing.decode(self.items[index])
        except SkipImage as err:
            return index, None, str(err), ""
        return index, square, "ok", self.preprocessing.doubts(width, height)


def _collate(batch: list[Any]) -> list[Any]:
    return batch


def _generated(item: ImageInput) -> bool:
    """Whether `item` is a file of a tree written by `artextract synth` (its record a few folders up)."""
    if not isinstance(item, str | Path):
        return False
    try:
        parents = Path(item).resolve().parents[:4]
    except (OSError, RuntimeError):  # a symlink loop: decoding reports it; it is no generated painting
        return False
    return any((parent / SYNTH_RECORD).is_file() for parent in parents)


def check_predict_arguments(top_k: int, batch_size: int, workers: int) -> None:
    """Refuse counts that no input could make right, before any image is read."""
    if top_k < 1:
        raise ArtExtractError(f"--top-k must be at least 1, got {top_k}")
    if batch_size < 1 or workers < 0:
        raise ArtExtractError(f"--batch-size must be at least 1 and --workers at least 0, got {batch_size} and "
                              f"{workers}")


class Predictor:
    """A trained model ready to classify images; create it with `artextract.load_model(path)`."""

    def __init__(self, path: str | Path, device: str = "auto", calibrated: bool = True) -> None:
        """`calibrated`: probabilities through the temperatures fitted on the selection set (stored in the model
        file); False gives the plain softmax of the logits."""
        self.path = Path(path)
        if self.path.suffix.lower() in {".pt", ".pth", ".ckpt", ".pkl"}:
            refuse_pickled(self.path)
        self.runtime = Runtime.resolve(device)
        self.model, self.info = load_model_file(self.path, self.runtime)
        self.preprocessing = self.info.preprocessing
        self.classes: dict[str, list[str]] = self.info.classes
        self.calibrated = calibrated
        self.temperature = self.info.temperature if calibrated else dict.fromkeys(self.classes, 1.0)

    @property
    def tasks(self) -> list[str]:
        return list(self.classes)

    def outputs(self, squares: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(logits per task, pooled embeddings) for decoded uint8 N x S x S x 3 squares (S = the cache size)."""
        batches = [torch.from_numpy(squares)]
        with contextlib.closing(forward_batches(self.model, batches, self.preprocessing, self.runtime)) as outputs:
            out = next(outputs)
        return ({task: logits.float().cpu().numpy() for task, logits in out["logits"].items()},
                out["embedding"].float().cpu().numpy())

    def logits(self, squares: np.ndarray) -> dict[str, np.ndarray]:
        """Logits per task for decoded uint8 N x S x S x 3 squares (S = the model's cache size)."""
        return self.outputs(squares)[0]

    def iter_predict(self, items: Sequence[ImageInput], top_k: int = 5, batch_size: int = 64, workers: int = 0,
                     progress: bool = False) -> Iterator[tuple[Prediction, np.ndarray | None]]:
        """(prediction, decoded square or None) per input, in input order, decoding in `workers` processes."""
        check_predict_arguments(top_k, batch_size, workers)
        if self.info.synthetic:
            self._warn_synthetic(items)
        return self._iter_predict(items, top_k, batch_size, workers, progress)

    def _warn_synthetic(self, items: Sequence[ImageInput]) -> None:
        """A model that only ever saw generated stand-ins says so when asked about anything else."""
        foreign = sum(not _generated(item) for item in items)
        if foreign:
            log.warning("%s", synthetic_warning(str(self.path), f"the {foreign} image(s)"))

    def _iter_predict(self, items: Sequence[ImageInput], top_k: int, batch_size: int, workers: int,
                      progress: bool) -> Iterator[tuple[Prediction, np.ndarray | None]]:
        loader = torch.utils.data.DataLoader(_Decoded(list(items), self.preprocessing),
                                             batch_size=batch_size, num_workers=workers, collate_fn=_collate)
        with Progress(len(items), "predict", enabled=progress) as bar:
            for batch in loader:
                good = [array for _, array, _, _ in batch if array is not None]
                logits, embeddings = self.outputs(np.stack(good)) if good else ({}, None)
                ranked = {task: top_classes(softmax(values, self.temperature[task]), top_k)
                          for task, values in logits.items()}
                # Open-set flags compare calibrated probabilities, whatever the output shows (--uncalibrated).
                limits = self.info.unknown_below
                unknown = {task: softmax(values, self.info.temperature[task]).max(axis=1) < limits[task]
                           for task, values in logits.items() if task in limits}
                row = 0
                for index, array, status, warning in batch:
                    result = Prediction(_describe(items[index]), status, warning=warning, calibrated=self.calibrated)
                    if array is not None:
                        result.embedding = embeddings[row]
                        result.unknown = [task for task, flags in unknown.items() if flags[row]]
                        for task, (ids, probabilities) in ranked.items():
                            result.predictions[task] = [{"class": self.classes[task][c], "probability": float(p)}
                                                        for c, p in zip(ids[row], probabilities[row], strict=True)]
                        row += 1
                    yield result, array
                bar.update(len(batch))

    def predict(self, images: ImageInput | Sequence[ImageInput], top_k: int = 5, as_frame: bool = False,
                batch_size: int = 64) -> list[dict[str, Any]] | pd.DataFrame:
        """Top-k classes with probabilities per task for each image (paths, folders, globs, PIL images or H x W x 3
        arrays; folders and globs are expanded as on the command line).

        Returns a list of plain dicts, or with `as_frame=True` a DataFrame with one row per image, task and rank.
        Unusable images are not dropped: their `status` says why.
        """
        results = [r.as_dict() for r, _ in self.iter_predict(_items(images), top_k, batch_size)]
        return to_frame(results) if as_frame else results

    def similar(self, images: ImageInput | Sequence[ImageInput], k: int = 8, index: Any = None,
                batch_size: int = 64, top_k: int = 5) -> list[dict[str, Any]]:
        """The `k` most similar paintings of an evaluated collection for each image, by cosine similarity of the
        model's pooled embedding: `index` is an EVAL folder (default: the run's own, RUN/eval) or an open
        `SimilarityIndex`. Each result is `predict`'s dict (`top_k` classes per task) plus `similar`: index row,
        path, similarity, labels, prediction."""
        from artextract.similar import SimilarityIndex, open_index

        check_predict_arguments(k, batch_size, 0)  # before the index is opened or anything is predicted
        if not isinstance(index, SimilarityIndex):
            from artextract.layout import RunFolder

            default = RunFolder(self.path.parent).default_eval  # the run's own evaluation
            index = open_index(Path(index) if index is not None else default, self.path)
        found = list(self.iter_predict(_items(images), top_k, batch_size))
        usable = [r.embedding for r, _ in found if r.embedding is not None]
        neighbours = iter(index.search(np.stack(usable), k) if usable else [])
        return [{**result.as_dict(), "similar": [n.as_dict() for n in next(neighbours)]
                 if result.embedding is not None else []} for result, _ in found]

    def heatmaps(self, squares: np.ndarray, task: str,
                 classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(class, Grad-CAM map) for each decoded square, for `task`: the evidence for `classes` (by default the
        top-1 class; pass `top_classes(squares)[task]` when mapping several tasks, to run the model once). Each map
        covers the evaluation view (`self.preprocessing.visible(square)`), the pixels the model saw."""
        from artextract.engine.explain import grad_cam

        chosen = torch.tensor(self.top_classes(squares)[task] if classes is None else classes)
        return chosen.numpy(), grad_cam(self.model, torch.from_numpy(squares), task, chosen, self.preprocessing)

    def top_classes(self, squares: np.ndarray) -> dict[str, np.ndarray]:
        """Each task's top-1 class index for each decoded square (one forward pass for all tasks)."""
        return {task: logits.argmax(axis=1) for task, logits in self.logits(squares).items()}

    def overlays(self, square: np.ndarray, classes: dict[str, int] | None = None) -> dict[str, bytes]:
        """PNG overlays of one decoded square's heat map per task (over the view the model saw), for `classes`
        (task -> class index; by default the top-1 of every task): what the explorer and `--cam` show."""
        from artextract.report.images import overlay_png

        if classes is None:
            classes = {task: int(top[0]) for task, top in self.top_classes(square[None]).items()}
        seen = self.preprocessing.visible(square)
        return {task: overlay_png(seen, self.heatmaps(square[None], task, np.array([chosen]))[1][0])
                for task, chosen in classes.items()}

    def write_heatmaps(self, square: np.ndarray, source: str, index: int, folder: Path) -> None:
        """Grad-CAM overlays of the top-1 class of each task: FOLDER/<index>-<name>-<task>-<class index>-<class>.png,
        every part but the indices a slug (a class or file name never picks the path)."""
        from artextract.core.atomic import write_bytes

        stem = slug(Path(source).stem or "image")
        tops = {task: int(top[0]) for task, top in self.top_classes(square[None]).items()}
        for task, png in self.overlays(square, tops).items():
            top = tops[task]
            write_bytes(folder / f"{index:05d}-{stem}-{slug(task)}-{top:03d}-{slug(self.classes[task][top])}.png", png)


def _items(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """One image or several; folders and globs expanded as on the command line."""
    single = isinstance(images, str | Path | Image.Image | np.ndarray)
    return [found for item in ([images] if single else list(images))
            for found in (expand_inputs([item]) if isinstance(item, str | Path) else [item])]


def _describe(item: ImageInput) -> str:
    if isinstance(item, str | Path):
        return str(item)
    return f"<{type(item).__name__}>"


def to_frame(results: Iterable[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for result in results:
        if not result["predictions"]:
            rows.append({"source": result["source"], "status": result["status"], "task": None, "rank": None,
                         "class": None, "probability": None, "unknown": None, "warning": result.get("warning", "")})
        for task, ranked in result["predictions"].items():
            rows += [{"source": result["source"], "status": result["status"], "task": task, "rank": rank,
                      "class": entry["class"], "probability": entry["probability"],
                      "unknown": task in result.get("unknown", []), "warning": result.get("warning", "")}
                     for rank, entry in enumerate(ranked, start=1)]
    frame = pd.DataFrame(rows, columns=["source", "status", "task", "rank", "class", "probability", "unknown",
                                        "warning"])
    return frame.astype({"rank": "Int64"})  # a whole number, blank where an image failed


def load_model(path: str | Path, device: str = "auto", calibrated: bool = True) -> Predictor:
    """Load a `model.safetensors` written by `artextract train` (or the RUN folder holding it); everything it
    needs is in the file. Probabilities are calibrated by the temperatures fitted on the selection set unless
    `calibrated=False`."""
    if Path(path).is_dir():
        from artextract.layout import RunFolder

        path = RunFolder(Path(path)).require_model()
    return Predictor(path, device, calibrated)
