"""A served painting is always the one its row names: the explorer takes the images from the DATA folder the
evaluation scored, whatever run.json says or --data passes, and refuses a DATA folder that is not that one."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from artextract.errors import ArtExtractError

pytest.importorskip("starlette")


@pytest.fixture(scope="module")
def other_data(make_synth, tmp_path_factory) -> Path:
    """The same generated collection as the shared run's DATA, prepared without a few of its images: the same
    classes, every later painting at another row of the cache."""
    from artextract.config import PrepareConfig
    from artextract.stages.prepare import prepare_dataset

    root = make_synth(tmp_path_factory.mktemp("synth_other"), artists=4, per_artist=30, size=40)
    for image in sorted((root / "wikiart").rglob("*.jpg"))[:5]:
        image.unlink()
    out = tmp_path_factory.mktemp("data_other") / "data"
    prepare_dataset(root / "csv", root / "wikiart", out, PrepareConfig(cache_size=32, workers=1))
    return out


@pytest.fixture(scope="module")
def run_evaluated_elsewhere(evaluated_run, other_data, tmp_path_factory) -> Path:
    """A copy of the shared run, evaluated on `other_data` (run.json still names the DATA it trained on)."""
    from artextract.cli import app

    run = Path(shutil.copytree(evaluated_run, tmp_path_factory.mktemp("copied") / "run",
                               ignore=shutil.ignore_patterns("eval", "similar*")))
    result = CliRunner().invoke(app, ["evaluate", "--run", str(run), "--data", str(other_data), "--batch-size", "32"])
    assert result.exit_code == 0, result.output
    return run


def _cache_index(data: Path, path: str) -> int:
    manifest = pd.read_parquet(data / "manifest.parquet")
    return int(manifest.loc[manifest["path"] == path, "cache_index"].iloc[0])


def _cached_square(data: Path, path: str) -> np.ndarray:
    from artextract.data.cache_files import open_cache

    return np.asarray(open_cache(data / "cache")[_cache_index(data, path)])


def test_a_run_evaluated_on_another_data_folder_shows_that_folders_paintings(run_evaluated_elsewhere, other_data,
                                                                              prepared_small):
    from artextract.serve.collection import Collection

    collection = Collection.open(run_evaluated_elsewhere)
    assert collection.data.root.resolve() == other_data.resolve()
    rows = collection.task_view("artist")["row"].to_numpy()[:10]
    moved = 0
    for row in rows:
        path = str(collection.row(row)["path"])
        assert np.array_equal(collection.square(row), _cached_square(other_data, path)), path
        moved += _cache_index(other_data, path) != _cache_index(prepared_small, path)
    assert moved, "the two DATA folders must place these paintings at different rows for the test to mean much"


def test_a_data_folder_the_evaluation_did_not_score_is_refused_in_one_line(run_evaluated_elsewhere, other_data,
                                                                           prepared_small, tmp_path):
    from artextract.serve.collection import Collection

    with pytest.raises(ArtExtractError, match=r"is not the DATA folder .* scored.*--data") as refused:
        Collection.open(run_evaluated_elsewhere, data=prepared_small)
    assert str(other_data.resolve()) in str(refused.value) and "\n" not in str(refused.value)
    # The same folder under another name is the same DATA (its manifest and cache, not its path, decide).
    renamed = Path(shutil.copytree(other_data, tmp_path / "renamed"))
    assert Collection.open(run_evaluated_elsewhere, data=renamed).data.root == renamed


def test_a_scored_data_folder_that_has_gone_is_named_with_what_to_pass(run_evaluated_elsewhere, other_data,
                                                                       tmp_path):
    from artextract.serve.collection import Collection

    moved = tmp_path / "moved"
    shutil.move(other_data, moved)
    try:
        with pytest.raises(ArtExtractError, match=r"scored .*no longer .*pass --data"):
            Collection.open(run_evaluated_elsewhere)
        assert Collection.open(run_evaluated_elsewhere, data=moved).data.root == moved
    finally:
        shutil.move(moved, other_data)


def test_recomputing_an_evaluation_reads_the_data_folder_it_scored(run_evaluated_elsewhere, other_data, monkeypatch):
    from artextract.report import html
    from artextract.stages.evaluate import evaluate_run

    seen = {}
    write_report = html.write_report

    def recording(out, run, data, *args, **kwargs):
        seen["data"] = data
        return write_report(out, run, data, *args, **kwargs)

    monkeypatch.setattr(html, "write_report", recording)
    evaluate_run(run_evaluated_elsewhere, from_predictions=True)
    assert Path(seen["data"]).resolve() == other_data.resolve()  # not run.json's DATA, which it did not score
