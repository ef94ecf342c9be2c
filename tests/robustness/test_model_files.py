"""Tampered model files and damaged training state give one clear line (exit 2), never a traceback or a 43 GB
allocation (issue 13, item 7)."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file


def _tampered(source, target, metadata_change=None, tensor_change=None, raw_change=None):
    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    metadata.update(raw_change or {})
    if metadata_change:
        config = json.loads(metadata["model_config"])
        config.update(metadata_change)
        metadata["model_config"] = json.dumps(config)
    if tensor_change:
        tensor_change(tensors)
    save_file(tensors, str(target), metadata=metadata)
    return target


@pytest.fixture
def images(tmp_path):
    """A folder of two plain paintings (its own: other tests plant FIFOs and loops in theirs)."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i, colour in enumerate([(200, 40, 40), (30, 90, 210)]):
        Image.new("RGB", (48, 40), colour).save(folder / f"painting-{i}.jpg")
    return folder


def _poison(tensors):
    name = next(n for n, t in tensors.items() if t.is_floating_point() and n.startswith("heads."))
    tensors[name] = torch.full_like(tensors[name], float("nan"))


@pytest.mark.parametrize(("change", "expected"), [
    ({"metadata_change": {"hidden_size": 60_000}}, "model metadata is out of range"),
    ({"metadata_change": {"hidden_size": "wide"}}, "model metadata is out of range"),
    ({"tensor_change": _poison}, "hold NaN or infinite values"),
    # issue 21: each of these used to reach a traceback, a MemoryError or NaN probabilities marked ok
    ({"metadata_change": {"reader": "tcn"}}, "'model.reader' must be one of"),
    ({"metadata_change": {"scan": "spiral"}}, "'model.scan' must be one of"),
    ({"raw_change": {"image_size": "0"}}, "image_size 0 and cache_size"),
    ({"raw_change": {"image_size": "-5"}}, "must be in [8, 4096]"),
    ({"raw_change": {"cache_size": "30000"}}, "cache_size 30000 must be in [8, 4096]"),
    ({"raw_change": {"mean": "[0.5]"}}, "mean must be 3 finite numbers"),
    ({"raw_change": {"mean": '"bright"'}}, "mean must be 3 finite numbers"),
    ({"raw_change": {"std": "[0, 0, 0]"}}, "std must be positive"),
    ({"raw_change": {"classes": '["a", "b"]'}}, "'classes' must map each task to its list of class names"),
])
def test_a_tampered_model_file_is_refused_in_one_line(run_cli, evaluated_run, images, tmp_path, change, expected):
    model = _tampered(evaluated_run / "model.safetensors", tmp_path / "model.safetensors", **change)
    result = run_cli("predict", "--model", model, images)
    assert result.code == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_an_empty_or_damaged_checkpoint_names_the_fix(run_cli, evaluated_run, prepared_small, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    for damage in (b"", b"PK\x03\x04 not a checkpoint"):
        (run / "checkpoints" / "last.pt").write_bytes(damage)
        result = run_cli("train", "--data", prepared_small, "--out", run, "--resume")
        assert result.code == 2, result.stderr
        assert "last.pt is damaged" in result.stderr and "Traceback" not in result.stderr
        # The state saved before the damaged one is kept and offered, and it loads.
        assert "last.pt.prev" in result.stderr
    (run / "checkpoints" / "last.pt").unlink()  # killed between keeping the previous state and the rename
    result = run_cli("train", "--data", prepared_small, "--out", run, "--resume")
    assert result.code == 2 and "last.pt.prev" in result.stderr, result.stderr
    from artextract.engine.checkpoint import load_checkpoint

    assert "model" in load_checkpoint(run / "checkpoints" / "last.pt.prev")
