"""Similar paintings: exact cosine search (one implementation for the outlier cards, `similar` and the API), the
index stored beside the evaluation and never served stale, and the command."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artextract.analysis import similarity
from artextract.errors import ArtExtractError


@pytest.mark.parametrize(("pool_chunk", "query_chunk"), [(32_768, 2_048), (7, 3)])
def test_nearest_is_the_exact_cosine_ranking_whatever_the_chunks(monkeypatch, pool_chunk, query_chunk):
    monkeypatch.setattr(similarity, "POOL_CHUNK", pool_chunk)
    monkeypatch.setattr(similarity, "QUERY_CHUNK", query_chunk)
    rng = np.random.default_rng(0)
    pool = similarity.unit_rows(rng.normal(size=(200, 16)) * rng.uniform(0.1, 9, size=(200, 1)))  # any length
    queries = similarity.unit_rows(rng.normal(size=(11, 16)))
    found, scores = similarity.nearest(queries, pool.astype(np.float16), 6)
    expected = np.argsort(-(queries @ pool.astype(np.float16).astype(np.float32).T), axis=1, kind="stable")[:, :6]
    np.testing.assert_array_equal(found, expected)
    assert (np.diff(scores, axis=1) <= 0).all()
    np.testing.assert_allclose(scores[:, 0], np.einsum("qd,qd->q", queries, pool[found[:, 0]]), atol=2e-3)


def test_nearest_skips_the_query_itself_and_breaks_ties_by_row():
    pool = similarity.unit_rows(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    found, scores = similarity.nearest(pool[:2], pool, 3, skip=np.array([0, 1]))
    np.testing.assert_array_equal(found, [[1, 3, 2], [0, 3, 2]])  # equal cosines: the lower row first
    np.testing.assert_allclose(scores[:, :2], 1.0)
    assert similarity.nearest(pool, pool, 10, skip=np.arange(4))[0].shape == (4, 3)  # k capped at the others


@pytest.fixture
def evaluation(evaluated_run, tmp_path) -> Path:
    """A copy of the shared run's evaluation without any index built by other tests: these tests build their own."""
    return Path(shutil.copytree(evaluated_run / "eval", tmp_path / "eval", ignore=shutil.ignore_patterns("similar")))


def test_the_index_is_built_once_and_rebuilt_when_the_predictions_change(evaluated_run, evaluation, caplog):
    from artextract.layout import EvalFolder, RunFolder
    from artextract.similar import open_index

    model = RunFolder(evaluated_run).model
    with caplog.at_level(logging.INFO, logger="artextract"):
        first = open_index(evaluation, model)
        again = open_index(evaluation, model)
    assert sum("similar: indexing" in r.getMessage() for r in caplog.records) == 1
    assert first.folder == again.folder and len(first) == len(pd.read_parquet(EvalFolder(evaluation).predictions))
    assert again.vectors.dtype == np.float32 and (first.folder / "vectors.f16").stat().st_size == len(first) * \
        first.vectors.shape[1] * 2

    predictions = pd.read_parquet(EvalFolder(evaluation).predictions)
    predictions = predictions.iloc[::-1].reset_index(drop=True)  # e.g. evaluate rerun: other rows, other order
    predictions.to_parquet(EvalFolder(evaluation).predictions, index=False)
    rebuilt = open_index(evaluation, model)
    assert rebuilt.folder != first.folder and not first.folder.exists()  # the stale index is gone, never served
    assert rebuilt.rows["path"].tolist() == predictions["path"].tolist()


def test_a_read_only_evaluation_is_searched_from_memory(evaluated_run, evaluation, monkeypatch, caplog):
    import errno

    from artextract import similar
    from artextract.layout import RunFolder

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(similar, "_write", refuse)
    with caplog.at_level(logging.WARNING, logger="artextract"):
        index = similar.open_index(evaluation, RunFolder(evaluated_run).model)
    assert "searching an index in memory" in caplog.text and len(index) > 0
    assert not (evaluation / "similar").exists()


def test_an_evaluated_painting_finds_itself_first(evaluated_run, evaluation):
    import artextract

    predictions = pd.read_parquet(evaluation / "predictions.parquet")
    data = Path(json.loads((evaluated_run / "run.json").read_text())["data"])
    images = Path(json.loads((data / "prepare_report.json").read_text())["inputs"]["images"])
    painting = predictions["path"].iloc[3]
    results = artextract.load_model(evaluated_run, "cpu").similar(images / painting, k=4, index=evaluation)
    (result,) = results
    assert result["status"] == "ok" and len(result["similar"]) == 4
    first = result["similar"][0]
    assert first["path"] == painting and first["row"] == 3  # the row of predictions.parquet, as the app links it
    assert first["similarity"] > 0.99  # the predict path embeds as evaluate did
    assert [n["similarity"] for n in result["similar"]] == sorted((n["similarity"] for n in result["similar"]),
                                                                  reverse=True)
    assert set(first["labels"]) == set(first["predicted"]) == {"artist", "style", "genre"}


def test_the_similar_command_writes_json_and_refuses_bad_arguments(run_cli, evaluated_run, evaluation, tmp_path):
    from PIL import Image

    image = tmp_path / "new painting.png"
    Image.new("RGB", (64, 64), (180, 40, 40)).save(image)
    out = tmp_path / "similar.json"
    result = run_cli("similar", "--model", evaluated_run, image, "--index", evaluation, "--top-k", "3",
                     "--output", out)
    assert result.code == 0, result.stderr
    (entry,) = json.loads(out.read_text())
    assert entry["source"] == str(image) and len(entry["similar"]) == 3
    known = set(pd.read_parquet(evaluation / "predictions.parquet")["path"])
    assert {n["path"] for n in entry["similar"]} <= known

    for args, expected in ((["--top-k", "0"], "--top-k must be at least 1, got 0"),
                           (["--index", tmp_path], "holds no predictions.parquet")):
        refused = run_cli("similar", "--model", evaluated_run, image, *args)
        assert refused.code == 2 and expected in refused.stderr, refused.stderr


def test_search_refuses_embeddings_of_another_width(evaluated_run, evaluation):
    from artextract.layout import RunFolder
    from artextract.similar import open_index

    index = open_index(evaluation, RunFolder(evaluated_run).model)
    with pytest.raises(ArtExtractError, match="the index belongs to another model"):
        index.search(np.ones((1, index.vectors.shape[1] + 1)))


def test_a_data_folder_is_indexed_whole_once_per_model_and_data(evaluated_run, tmp_path, caplog):
    import artextract

    run = Path(shutil.copytree(evaluated_run, tmp_path / "run", ignore=shutil.ignore_patterns("similar*")))
    data = Path(json.loads((run / "run.json").read_text())["data"])
    manifest = pd.read_parquet(data / "manifest.parquet")
    usable = manifest[manifest["status"] == "ok"]
    model = artextract.load_model(run, "cpu")
    painting = usable[usable["split"] == "train"]["path"].iloc[0]  # a training painting: not in RUN/eval
    images = Path(json.loads((data / "prepare_report.json").read_text())["inputs"]["images"])
    with caplog.at_level(logging.INFO, logger="artextract"):
        (result,) = model.similar(images / painting, k=3, index=data)
        model.similar(images / painting, k=3, index=data)
    assert sum("predicting every painting" in r.getMessage() for r in caplog.records) == 1
    assert result["similar"][0]["path"] == painting and result["similar"][0]["split"] == "train"
    (folder,) = (run / "similar-data").iterdir()
    indexed = pd.read_parquet(folder / "predictions.parquet")
    assert sorted(indexed["path"]) == sorted(usable["path"]) and set(indexed["split"]) == set(usable["split"])


def test_an_evaluation_made_with_another_model_is_refused(evaluated_run, evaluation, tmp_path):
    from artextract.similar import open_index

    other = Path(shutil.copytree(evaluated_run, tmp_path / "other", ignore=shutil.ignore_patterns("eval", "similar*")))
    weights = bytearray((other / "model.safetensors").read_bytes())
    weights[-1] ^= 0xFF  # the last byte of the last tensor: another model, of the same shape
    (other / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(ArtExtractError, match="was evaluated with another model"):
        open_index(evaluation, other / "model.safetensors")
    (evaluation / "inputs.json").write_text("{not json")  # damaged: named with what to do, no traceback
    with pytest.raises(ArtExtractError, match=r"inputs.json is damaged .*rerun artextract evaluate"):
        open_index(evaluation, evaluated_run / "model.safetensors")


def test_the_model_is_identified_by_its_content_even_when_its_recorded_file_has_gone(evaluated_run, evaluation,
                                                                                      tmp_path):
    import json

    from artextract.similar import open_index

    other = Path(shutil.copytree(evaluated_run, tmp_path / "other", ignore=shutil.ignore_patterns("eval", "similar*")))
    weights = bytearray((other / "model.safetensors").read_bytes())
    weights[-1] ^= 0xFF
    (other / "model.safetensors").write_bytes(bytes(weights))
    inputs = json.loads((evaluation / "inputs.json").read_text())
    inputs["model"] = str(tmp_path / "moved-away" / "model.safetensors")  # the evaluated model's file moved
    (evaluation / "inputs.json").write_text(json.dumps(inputs))
    with pytest.raises(ArtExtractError, match="was evaluated with another model"):
        open_index(evaluation, other / "model.safetensors")
    assert len(open_index(evaluation, evaluated_run / "model.safetensors"))  # its own model: found by content

    (evaluation / "inputs.json").unlink()  # which model made it is now unknown: refused, never guessed
    with pytest.raises(ArtExtractError, match=r"cannot tell which model .*inputs.json"):
        open_index(evaluation, evaluated_run / "model.safetensors")


def _edit_count(folder: Path, factor: float) -> None:
    import json

    info = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({**info, "count": max(1, int(info["count"] * factor))}))


DAMAGES = {
    "index.json garbage": lambda f: (f / "index.json").write_bytes(b"\x00\xff garbage"),
    "index.json {}": lambda f: (f / "index.json").write_text("{}"),
    "count x10": lambda f: _edit_count(f, 10),
    "count edited down": lambda f: _edit_count(f, 0.1),
    "vectors cut": lambda f: (f / "vectors.f16").write_bytes((f / "vectors.f16").read_bytes()[:100]),
    "vectors deleted": lambda f: (f / "vectors.f16").unlink(),
    "vectors changed": lambda f: (f / "vectors.f16").write_bytes(bytes(len((f / "vectors.f16").read_bytes()))),
    "rows garbage": lambda f: (f / "rows.parquet").write_bytes(b"PAR1 not parquet"),
    "rows deleted": lambda f: (f / "rows.parquet").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_index_is_built_again_and_says_so(evaluated_run, evaluation, caplog, damage):
    from artextract.similar import open_index

    model = evaluated_run / "model.safetensors"
    built = open_index(evaluation, model)
    whole, first = len(built), built.search(built.vectors[:1], 3)[0]
    DAMAGES[damage](built.folder)
    with caplog.at_level(logging.WARNING, logger="artextract"):
        healed = open_index(evaluation, model)
    assert any("is damaged" in r.getMessage() and "building it again" in r.getMessage() for r in caplog.records)
    assert len(healed) == whole and healed.search(healed.vectors[:1], 3)[0] == first
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="artextract"):
        open_index(evaluation, model)  # healed for good: no second rebuild
    assert not caplog.records
