"""The one place that knows each folder's file names: DATA (prepare), RUN (train) and EVAL (evaluate).

Every stage reads the previous stage's folder through these classes and writes its own through them, so a file
name is spelled once. They hold paths (their only I/O is existence checks and reading back the small JSON records,
checked), so importing them costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from artextract.core.records import file_digest, read_classes, read_record
from artextract.errors import ArtExtractError

if TYPE_CHECKING:
    import pandas as pd

REWRITE_HINT = "rerun artextract evaluate with --force (and without --from-predictions) to write it again"
CONFIG, ENVIRONMENT = "config.yaml", "env.json"  # written beside every stage's outputs (env.json by core.environment)


@dataclass(frozen=True)
class DataFolder:
    """DATA/: written by `artextract prepare`."""

    root: Path

    manifest = property(lambda self: self.root / "manifest.parquet")
    classes = property(lambda self: self.root / "classes.json")
    cache = property(lambda self: self.root / "cache")  # the pre-resized images (data/cache.py owns its files)
    features = property(lambda self: self.root / "features")  # frozen-backbone feature maps
    report_json = property(lambda self: self.root / "prepare_report.json")
    report_md = property(lambda self: self.root / "prepare_report.md")
    labels_csv = property(lambda self: self.root / "labels.csv")  # for users of the original notebook

    def read_classes(self) -> dict[str, list[str]]:
        return read_classes(self.classes, f"rerun artextract prepare on {self.root}")


@dataclass(frozen=True)
class RunFolder:
    """RUN/: written by `artextract train`."""

    root: Path

    config = property(lambda self: self.root / CONFIG)
    run_info = property(lambda self: self.root / "run.json")  # which DATA folder and tasks the run trained on
    metrics = property(lambda self: self.root / "metrics.csv")
    last = property(lambda self: self.root / "checkpoints" / "last.pt")
    model = property(lambda self: self.root / "model.safetensors")
    default_eval = property(lambda self: self.root / "eval")

    def outputs(self) -> list[Path]:
        """Everything `train` (and the default `evaluate`) writes here: what `train --force` removes."""
        return [self.config, self.root / ENVIRONMENT, self.run_info, self.metrics, self.last.parent, self.model,
                self.default_eval]

    def require_model(self) -> Path:
        if not self.model.is_file():
            raise ArtExtractError(
                f"{self.root} is not a trained RUN folder (no {self.model.name})"
                + (f": its training stopped before the first epoch ended; continue it with `artextract train --out "
                   f"{self.root} --resume`" if self.last.is_file() else
                   f": train a model first (artextract train --data DATA --out {self.root})"))
        return self.model

    def data_folder(self, given: Path | None = None) -> Path:
        """`given`, else the DATA folder the run was trained on (run.json records it)."""
        if given is not None:
            return given
        if not self.run_info.is_file():
            raise ArtExtractError(f"{self.root} does not say which DATA folder it was trained on ({self.run_info.name} "
                                  "missing): pass --data DATA, the folder written by `artextract prepare`")
        return Path(self.read_info("pass --data DATA with the folder the run was trained on")["data"])

    def finished(self) -> dict[str, object] | None:
        """run.json's record of the training finishing (its epoch, the digests of last.pt and the model file), if
        both files are still the ones it finished with; None for a run that is training, was interrupted, or whose
        files were replaced or restored since."""
        if not self.run_info.is_file():
            return None
        record = self.read_info("train the run again").get("finished")
        if not isinstance(record, dict):
            return None
        try:
            same = (file_digest(self.last) == record.get("last_sha256")
                    and file_digest(self.model) == record.get("model_sha256"))
        except OSError:
            return None
        return record if same else None

    def read_info(self, fix: str) -> dict[str, object]:
        """run.json: the DATA folder, tasks and data key the run trained on."""
        return read_record(self.run_info, fix, keys=("data",))


@dataclass(frozen=True)
class EvalFolder:
    """RUN/eval/ (or `evaluate --out`): written by `artextract evaluate`."""

    root: Path

    predictions = property(lambda self: self.root / "predictions.parquet")
    classes = property(lambda self: self.root / "classes.json")
    inputs = property(lambda self: self.root / "inputs.json")  # which model and DATA produced the predictions
    metrics = property(lambda self: self.root / "metrics.json")
    outliers = property(lambda self: self.root / "outliers.csv")
    explain = property(lambda self: self.root / "explain")
    report_html = property(lambda self: self.root / "report.html")
    report_md = property(lambda self: self.root / "report.md")

    def outputs(self) -> list[Path]:
        """Everything `evaluate` writes here: what `evaluate --force` removes."""
        named = [self.predictions, self.classes, self.inputs, self.metrics, self.outliers, self.explain,
                 self.report_html, self.report_md, self.root / ENVIRONMENT]
        figures = [p for pattern in ("confusion_*", "f1_*.png", "reliability_*.png") for p in self.root.glob(pattern)]
        return named + sorted(figures)

    def thumbnail(self, cache_index: int) -> Path:
        """The painting as the model saw it (JPEG, see report/images.py)."""
        return self.explain / f"{cache_index}.jpg"

    def heatmap(self, cache_index: int, task: str, kind: str) -> Path:
        """`kind` is "cam" or "attention"."""
        return self.explain / f"{cache_index}-{task}-{kind}.jpg"

    def confusion(self, task: str, suffix: str, extension: str) -> Path:
        return self.root / f"confusion_{task}{suffix}.{extension}"

    def figure(self, kind: str, task: str) -> Path:
        """`kind` is "f1" or "reliability"."""
        return self.root / f"{kind}_{task}.png"

    def read_predictions(self) -> tuple[pd.DataFrame, dict[str, list[str]]]:
        """predictions.parquet and its classes.json, checked: a damaged or hand-edited file is named in one line,
        not met as a traceback deep inside the metrics."""
        import numpy as np
        import pandas as pd

        fix = REWRITE_HINT
        classes = read_classes(self.classes, fix)
        try:
            predictions = pd.read_parquet(self.predictions)
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise ArtExtractError(f"{self.predictions} is damaged ({str(err).splitlines()[0]}); {fix}") from None
        needed = ["path", "split", "cache_index", "embedding", *(f"{kind}_{task}" for task in classes
                                                                  for kind in ("label", "pred", "logits"))]
        missing = [column for column in needed if column not in predictions.columns]
        if missing:
            raise ArtExtractError(f"{self.predictions} has no column {missing[0]!r}; {fix}")
        for task, names in classes.items():
            labels = pd.to_numeric(predictions[f"label_{task}"], errors="coerce")
            bad = ~labels.between(-1, len(names) - 1)
            bad |= ~pd.to_numeric(predictions[f"pred_{task}"], errors="coerce").between(0, len(names) - 1)  # NaN
            widths = predictions[f"logits_{task}"].map(lambda row: len(row) if hasattr(row, "__len__") else -1)
            bad |= widths != len(names)
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise ArtExtractError(f"{self.predictions} row {row} ({predictions['path'].iloc[row]}): "
                                      f"label_{task}, pred_{task} or logits_{task} does not fit the {len(names)} "
                                      f"{task} classes of {self.classes.name}; {fix}")
        return predictions, classes
