"""Frozen-backbone training from the feature cache, and frozen epochs followed by fine-tuning."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from artextract.engine import features as features_module
from artextract.engine.checkpoint import load_model_file
from artextract.engine.data import load_data_folder
from artextract.engine.features import build_features
from artextract.engine.runtime import Runtime
from artextract.models import build_model
from artextract.stages.train import train

from conftest import tiny_train_config


def _backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith("backbone.")}


def _feature_folders(data):
    return sorted(p for p in (data / "features").iterdir() if p.is_dir()) if (data / "features").exists() else []


def test_frozen_training_reads_cached_maps_and_leaves_the_backbone_alone(prepared_small, tmp_path):
    # Its own DATA: other tests (ablate) leave feature folders of other test_resnet weights in the shared one.
    prepared_small = Path(shutil.copytree(prepared_small, tmp_path / "data",
                                          ignore=shutil.ignore_patterns("features", ".artextract.lock")))
    config = tiny_train_config(epochs=3, freeze_backbone=True)
    train(prepared_small, tmp_path / "a", config)
    (folder,) = [f for f in _feature_folders(prepared_small) if f.name.startswith("test_resnet-32px-")]
    assert np.load(folder / "done.npy").sum() == (load_data_folder(prepared_small).manifest["status"] == "ok").sum()
    stamp = (folder / "done.npy").stat().st_mtime_ns
    model, info = load_model_file(tmp_path / "a" / "model.safetensors")
    torch.manual_seed(config.train.seed)  # the same initial backbone as the run's (Fabric seeds the same way)
    initial = build_model(config.model, info.classes).state_dict()
    for key, value in _backbone(model.state_dict()).items():
        assert torch.equal(value, initial[key]), key
    metrics = pd.read_csv(tmp_path / "a" / "metrics.csv")
    assert metrics["train_loss"].iloc[-1] < metrics["train_loss"].iloc[0]
    # The cached maps are the backbone's maps of the evaluation view: the model gives the same logits from them
    # as from the images (up to float16 rounding).
    data = load_data_folder(prepared_small)
    cache = build_features(data, model.backbone, "test_resnet", info.preprocessing, Runtime.resolve("cpu"),
                           torch.device("cpu"), 16)
    assert (folder / "done.npy").stat().st_mtime_ns == stamp  # nothing was computed again
    rows = data.manifest["cache_index"].to_numpy()[:8]
    from artextract.data.cache_files import open_cache

    squares = torch.from_numpy(np.ascontiguousarray(open_cache(data.folder.cache)[rows]))
    with torch.no_grad():
        from_images = model(info.preprocessing.eval_view(squares))["logits"]["artist"]
        from_maps = model(torch.from_numpy(cache.maps[rows].astype(np.float32)), from_features=True)["logits"]
    torch.testing.assert_close(from_maps["artist"], from_images, atol=2e-2, rtol=2e-2)
    # Another input size is another feature cache.
    train(prepared_small, tmp_path / "b", tiny_train_config(epochs=1, freeze_backbone=True, image_size=24))
    assert any(f.name.startswith("test_resnet-24px-") for f in _feature_folders(prepared_small))


def test_frozen_epochs_then_fine_tuning(prepared_small, tmp_path):
    config = tiny_train_config(epochs=3, frozen_epochs=1, backbone_lr_scale=0.5)
    train(prepared_small, tmp_path / "run", config, should_stop=lambda epoch: epoch == 1)
    after_frozen = _backbone(torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"])
    torch.manual_seed(config.train.seed)
    initial = build_model(config.model, load_data_folder(prepared_small).classes).state_dict()
    assert all(torch.equal(v, initial[k]) for k, v in after_frozen.items() if "running" not in k)
    train(prepared_small, tmp_path / "run", config, resume=True)
    tuned = _backbone(load_file(tmp_path / "run" / "model.safetensors"))
    last = _backbone(torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"])
    assert any(not torch.equal(v, initial[k]) for k, v in last.items() if k.endswith("weight")), "fine-tuned"
    assert tuned.keys() == last.keys()


def test_an_interrupted_feature_build_resumes(prepared_small, tmp_path, monkeypatch):
    data = load_data_folder(prepared_small)
    config = tiny_train_config()
    torch.manual_seed(1)
    model = build_model(config.model, data.classes).eval()
    from artextract.engine.preprocessing import Preprocessing

    preprocessing = Preprocessing(data.cache_size, 32, model.backbone.mean, model.backbone.std)
    monkeypatch.setattr("artextract.core.row_store.SAVE_EVERY_S", 0.0)
    real = features_module.forward_batches

    def dies_after_two(*args, **kwargs):
        for n, out in enumerate(real(*args, **kwargs)):
            if n == 2:
                raise KeyboardInterrupt
            yield out

    monkeypatch.setattr(features_module, "forward_batches", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_features(data, model.backbone, "resumed", preprocessing, Runtime.resolve("cpu"),
                       torch.device("cpu"), 8)
    (folder,) = [f for f in _feature_folders(prepared_small) if f.name.startswith("resumed-")]
    assert np.load(folder / "done.npy").sum() == 16  # two batches of 8 were kept
    monkeypatch.setattr(features_module, "forward_batches", real)
    resumed = build_features(data, model.backbone, "resumed", preprocessing, Runtime.resolve("cpu"),
                             torch.device("cpu"), 8)
    straight = build_features(data, model.backbone, "straight", preprocessing, Runtime.resolve("cpu"),
                              torch.device("cpu"), 64)
    rows = data.manifest["cache_index"].to_numpy()
    np.testing.assert_allclose(resumed.maps[rows].astype(np.float32), straight.maps[rows].astype(np.float32),
                               atol=1e-3)


def test_a_cut_short_feature_file_is_computed_again(prepared_small):
    data = load_data_folder(prepared_small)
    torch.manual_seed(2)
    model = build_model(tiny_train_config().model, data.classes).eval()
    from artextract.engine.preprocessing import Preprocessing

    preprocessing = Preprocessing(data.cache_size, 32, model.backbone.mean, model.backbone.std)
    args = (data, model.backbone, "cut", preprocessing, Runtime.resolve("cpu"), torch.device("cpu"), 32)
    first = build_features(*args)
    rows = data.manifest["cache_index"].to_numpy()
    expected = first.maps[rows].astype(np.float32)
    with open(first.folder / "features.f16", "r+b") as handle:
        handle.truncate(100)
    again = build_features(*args)
    np.testing.assert_array_equal(again.maps[rows].astype(np.float32), expected)
