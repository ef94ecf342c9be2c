"""The explorer checks the evaluation files it reads when it starts: a damaged or hand-edited one is refused in one
line naming the file and the command that writes it again, never met as a 500 page or a traceback later."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artextract.errors import ArtExtractError

pytest.importorskip("starlette")


def _edit_metrics(folder: Path, edit) -> None:
    metrics = json.loads((folder / "eval" / "metrics.json").read_text())
    edit(metrics["tasks"]["genre"])
    (folder / "eval" / "metrics.json").write_text(json.dumps(metrics))


def _edit_predictions(folder: Path, edit) -> None:
    predictions = pd.read_parquet(folder / "eval" / "predictions.parquet")
    edit(predictions)
    predictions.to_parquet(folder / "eval" / "predictions.parquet", index=False)


def _wider_embedding(predictions: pd.DataFrame) -> None:
    predictions.at[3, "embedding"] = np.zeros(len(predictions["embedding"].iloc[0]) + 5, np.float32)


DAMAGES = {  # what is damaged -> (how, the file the refusal names, the command it names)
    "outliers.csv random bytes": (lambda f: (f / "eval" / "outliers.csv").write_bytes(bytes(range(256)) * 8),
                                  "outliers.csv", "--from-predictions"),
    "outliers.csv empty": (lambda f: (f / "eval" / "outliers.csv").write_bytes(b""), "outliers.csv",
                           "--from-predictions"),
    "outliers.csv without its scores": (
        lambda f: pd.read_csv(f / "eval" / "outliers.csv").drop(columns="score_combined").to_csv(
            f / "eval" / "outliers.csv", index=False), "outliers.csv", "--from-predictions"),
    "a short confusion matrix": (lambda f: _edit_metrics(f, lambda t: t["confusion"].pop()), "metrics.json",
                                 "--from-predictions"),
    "a confusion matrix of strings": (lambda f: _edit_metrics(f, lambda t: t.update(confusion="oops")),
                                      "metrics.json", "--from-predictions"),
    "a cache row out of range": (
        lambda f: _edit_predictions(f, lambda p: p.__setitem__("cache_index", p["cache_index"] + 10_000)),
        "predictions.parquet", "artextract evaluate"),
    "an embedding of another width": (lambda f: _edit_predictions(f, _wider_embedding), "predictions.parquet",
                                      "artextract evaluate"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_evaluation_is_refused_at_start_up_in_one_line(evaluated_run, tmp_path, damage):
    from artextract.serve.collection import Collection

    run = Path(shutil.copytree(evaluated_run, tmp_path / "run", ignore=shutil.ignore_patterns("similar*")))
    how, named, command = DAMAGES[damage]
    how(run)
    with pytest.raises(ArtExtractError) as refused:
        Collection.open(run)
    message = str(refused.value)
    assert named in message and command in message and "\n" not in message, message


def test_a_cache_cut_short_is_refused_at_start_up(evaluated_run, prepared_small, tmp_path):
    from artextract.serve.collection import Collection

    data = Path(shutil.copytree(prepared_small, tmp_path / "data", ignore=shutil.ignore_patterns("features")))
    images = data / "cache" / "images.u8"
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
    with pytest.raises(ArtExtractError, match=r"images.u8 .*shorter.*artextract prepare"):
        Collection.open(evaluated_run, data=data)


def test_a_row_number_of_thousands_of_digits_is_not_found(evaluated_run):
    from starlette.testclient import TestClient

    from artextract.serve.app import create_app
    from artextract.serve.collection import Collection

    client = TestClient(create_app(Collection.open(evaluated_run)), raise_server_exceptions=False)
    huge = "9" * 5000
    for url in (f"/painting/{huge}", f"/thumb/{huge}.jpg", f"/image/{huge}.jpg", f"/heatmap/{huge}/artist.png",
                f"/audited/{huge}.jpg"):
        assert client.get(url).status_code == 404, url[:40]


def test_a_task_without_scored_paintings_is_not_mistaken_for_damage(evaluated_run, tmp_path):
    from starlette.testclient import TestClient

    from artextract.serve.app import create_app
    from artextract.serve.collection import Collection

    run = Path(shutil.copytree(evaluated_run, tmp_path / "run", ignore=shutil.ignore_patterns("similar*")))
    _edit_metrics(run, lambda task: (task.clear(), task.update(images=0)))  # what evaluate writes for such a task
    client = TestClient(create_app(Collection.open(run)))
    assert client.get("/confusion/genre").status_code == 404 and client.get("/confusion/artist").status_code == 200
