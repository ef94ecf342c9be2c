"""The explorer's label-issues view: a label audit (`artextract audit`) of the DATA the served run trained on,
ranked as the audit ranked it, each painting beside the nearest paintings of the class it is suggested to be.

Its paintings are training paintings, which the evaluated collection does not hold: they are addressed by their
row in DATA's image cache, an integer, and only rows the audit lists are served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from artextract.errors import ArtExtractError
from artextract.layout import DataFolder

ISSUES_PAGE = 30


@dataclass(frozen=True)
class IssueQuery:
    task: str
    flagged: bool = True  # only the flagged quota (Confident Learning's estimate), or every painting
    given: str = ""  # class name filters
    suggested: str = ""
    page: int = 1

    @classmethod
    def parse(cls, params: dict[str, str], tasks: list[str]) -> IssueQuery:
        task = params.get("task", tasks[0])
        try:
            page = max(1, int(params.get("page", 1)))
        except ValueError:
            page = 1
        return cls(task if task in tasks else tasks[0], params.get("flagged", "yes") == "yes",
                   params.get("given", ""), params.get("suggested", ""), page)


@dataclass
class LabelIssues:
    folder: Path
    record: dict[str, Any]
    frames: dict[str, pd.DataFrame]  # per task, the ranked rows of label_issues_<task>.csv
    classes: dict[str, list[str]]

    @classmethod
    def open(cls, folder: Path, data: DataFolder, classes: dict[str, list[str]]) -> LabelIssues:
        """The audit in `folder`, checked to be of `data`: by its recorded DATA folder and by the paintings at its
        cache rows, so that no painting is ever shown under another's name."""
        summary = folder / "audit.json"
        try:
            record = json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ArtExtractError(f"{folder} is not a finished label audit ({summary.name}: {err}); run "
                                  f"`artextract audit --data {data.root} --out {folder}`") from None
        if Path(str(record.get("data"))).resolve() != data.root.resolve():
            raise ArtExtractError(f"{folder} audits {record.get('data')}, but the served run reads {data.root}: serve "
                                  "a run trained on the audited DATA, or pass --data with it")
        manifest = pd.read_parquet(data.manifest, columns=["path", "cache_index"])
        path_at = dict(zip(manifest["cache_index"], manifest["path"], strict=True))
        frames = {}
        for task in record.get("tasks", []):
            try:
                frame = pd.read_csv(folder / f"label_issues_{task}.csv", keep_default_na=False)
            except (OSError, ValueError) as err:
                raise ArtExtractError(f"{folder}/label_issues_{task}.csv is unreadable ({err}); run the audit "
                                      "again") from None
            moved = [p for p, i in zip(frame["path"], frame["cache_index"], strict=True) if path_at.get(i) != p]
            if moved:
                raise ArtExtractError(f"{folder}: {moved[0]} is not at its recorded place in {data.root}'s cache "
                                      "(DATA was prepared again since the audit): run the audit again")
            frames[task] = frame
        return cls(folder, record, frames, classes)

    @property
    def tasks(self) -> list[str]:
        return list(self.frames)

    @cached_property
    def cache_rows(self) -> frozenset[int]:
        """The cache rows this view may serve: the audited paintings (their suggested neighbours among them)."""
        return frozenset(int(i) for frame in self.frames.values() for i in frame["cache_index"])

    @cached_property
    def _cache_row_of(self) -> dict[str, dict[str, int]]:
        """Per task, each listed painting's cache row (what a page's neighbours are shown by)."""
        return {task: dict(zip(frame["path"], frame["cache_index"].astype(int), strict=True))
                for task, frame in self.frames.items()}

    def select(self, query: IssueQuery) -> tuple[list[dict[str, Any]], int]:
        """(this page's rows, each with its neighbours' cache rows; the number matching)."""
        frame = self.frames[query.task]
        if query.flagged:
            frame = frame[frame["flagged"].astype(str).str.lower() == "true"]
        if query.given:
            frame = frame[frame["label_name"] == query.given]
        if query.suggested:
            frame = frame[frame["suggested_name"] == query.suggested]
        start = (query.page - 1) * ISSUES_PAGE
        page = frame.iloc[start:start + ISSUES_PAGE]
        index = self._cache_row_of[query.task]
        rows = []
        for record in page.to_dict("records"):
            neighbours = [p for p in str(record.get("nearest_of_suggested", "")).split(";") if p in index]
            rows.append(record | {"neighbours": [(p, int(index[p])) for p in neighbours]})
        return rows, len(frame)
