"""Partial fine-tuning from a mid-network cache: the backbone's last stages train from the maps entering them.

Also: `evaluate` of a frozen-backbone run reads the cached maps instead of running the backbone again.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from artextract.config import ModelConfig
from artextract.engine.checkpoint import load_checkpoint, load_model_file
from artextract.errors import ConfigError
from artextract.models import build_model
from artextract.models.backbone import Backbone
from artextract.stages.train import train

from conftest import tiny_train_config

CLASSES = {"artist": ["a", "b", "c"]}


@pytest.mark.parametrize(("backbone", "tuned"), [("test_resnet", 1), ("test_resnet", 2), ("test_efficientnet", 1),
                                                 ("test_efficientnet", 3)])
def test_the_split_backbone_computes_the_same_map(backbone, tuned):
    torch.manual_seed(0)
    whole = build_model(ModelConfig(backbone=backbone, tasks=["artist"], hidden_size=8), CLASSES).eval()
    split = build_model(ModelConfig(backbone=backbone, tasks=["artist"], hidden_size=8, tuned_stages=tuned), CLASSES)
    split.load_state_dict(whole.state_dict())  # the same parameter names: a tuned model file loads as any other
    split.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        cached = split.backbone.frozen_part()(images)
        torch.testing.assert_close(split.backbone.tail(cached), whole.backbone(images))
        torch.testing.assert_close(split(cached, from_features=True)["logits"]["artist"],
                                   whole(images)["logits"]["artist"])
    assert cached.shape[1] != whole.backbone.num_features  # the maps entering the last stages, not the last map
    tuned_ids = {id(p) for p in split.backbone.tuned_parameters()}
    assert tuned_ids and not tuned_ids & {id(p) for p in split.backbone.frozen_part().parameters()}
    split.backbone.set_frozen(True)
    trainable = {id(p) for p in split.backbone.parameters() if p.requires_grad}
    assert trainable == tuned_ids
    # The state dict is that of the whole backbone: nothing is registered twice.
    assert split.state_dict().keys() == whole.state_dict().keys()


def test_more_tuned_stages_than_the_backbone_has_are_refused():
    with pytest.raises(ConfigError, match=r"tuned_stages=5 .* has 4 stages"):
        build_model(ModelConfig(backbone="test_resnet", tasks=["artist"], tuned_stages=5), CLASSES)
    with pytest.raises(ConfigError, match="not a staged CNN"):
        build_model(ModelConfig(backbone="test_vit", tasks=["artist"], tuned_stages=1), CLASSES)


def _config(**train_overrides):
    config = tiny_train_config(freeze_backbone=True, feature_hflip=True, backbone_lr_scale=0.5, **train_overrides)
    config.model.tuned_stages = 1
    return config


@pytest.fixture
def own_data(prepared_small, tmp_path):
    return Path(shutil.copytree(prepared_small, tmp_path / "data",
                                ignore=shutil.ignore_patterns("features", ".artextract.lock")))


def test_partial_fine_tuning_trains_the_last_stage_from_its_cache_and_resumes_exactly(own_data, tmp_path):
    config = _config(epochs=3)
    train(own_data, tmp_path / "whole", config)
    (folder,) = (own_data / "features").iterdir()
    assert "-tune1-" in folder.name
    model, info = load_model_file(tmp_path / "whole" / "model.safetensors")
    channels = json.loads((folder / "layout.json").read_text())["shape"][0]
    assert channels == model.backbone.model.layer4[0].conv1.in_channels  # the input of the tuned last stage
    torch.manual_seed(config.train.seed)  # the run's initial weights (Fabric seeds the same way)
    initial = build_model(config.model, info.classes).state_dict()
    final = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["model"]
    changed = {k for k, v in final.items() if k.startswith("backbone.") and not torch.equal(v, initial[k])}
    assert changed and all(k.startswith("backbone.model.layer4.") for k in changed), sorted(changed)[:5]
    # Interrupted after the first epoch and resumed: the same weights as the uninterrupted run.
    train(own_data, tmp_path / "resumed", config, should_stop=lambda epoch: epoch == 1)
    train(own_data, tmp_path / "resumed", config, resume=True)
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["model"]
    for key, value in final.items():
        assert torch.equal(value, resumed[key]), key


def test_evaluate_reads_the_cached_maps_of_a_frozen_run(own_data, tmp_path, run_cli, monkeypatch):
    run = tmp_path / "run"
    train(own_data, run, _config(epochs=2))
    through_backbone = []  # images pushed through the whole backbone, per evaluation
    real_forward = Backbone.forward

    def counting(self, images):
        through_backbone[-1] += len(images)
        return real_forward(self, images)

    monkeypatch.setattr(Backbone, "forward", counting)
    through_backbone.append(0)
    assert run_cli("evaluate", "--run", run, "--batch-size", "16").code == 0
    from_maps = pd.read_parquet(run / "eval" / "predictions.parquet")
    shutil.rmtree(own_data / "features")  # now evaluate must run the backbone over the images
    through_backbone.append(0)
    result = run_cli("evaluate", "--run", run, "--batch-size", "16", "--force")
    assert result.code == 0, result.stderr
    from_images = pd.read_parquet(run / "eval" / "predictions.parquet")
    # Only the explained handful (Grad-CAM) went through the backbone the first time.
    assert through_backbone[1] - through_backbone[0] == len(from_images), through_backbone
    np.testing.assert_allclose(np.stack(from_maps["logits_artist"]), np.stack(from_images["logits_artist"]),
                               atol=2e-2, rtol=2e-2)  # float16 maps against float32 ones
    assert (from_maps["pred_artist"] == from_images["pred_artist"]).mean() > 0.95
    # predict needs only the model file: the whole backbone runs on new images.
    assert run_cli("predict", "--model", run, _an_image(tmp_path), "--format", "json").code == 0


def _an_image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "painting.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
    return path


def test_training_from_cached_maps_takes_one_thread_beside_busy_processes():
    from artextract.engine.runtime import cpu_threads_for

    assert cpu_threads_for(True, otherwise=2, load=lambda: 1.0) == 1  # one other process keeps a core busy
    assert cpu_threads_for(True, otherwise=2, load=lambda: 0.1) == 2  # a quiet machine: every core
    assert cpu_threads_for(True, otherwise=2, load=lambda: None) == 2  # cannot tell: every core
    assert cpu_threads_for(False, otherwise=2, load=lambda: 1.0) == 2  # through the backbone: large ops
    assert cpu_threads_for(True, configured=3, otherwise=2, load=lambda: 1.0) == 3  # the user's word wins


def test_a_busy_process_is_seen():
    import subprocess
    import sys

    from artextract.engine.runtime import others_cpu_load

    if others_cpu_load() is None:
        pytest.skip("no /proc here")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        seen = max(others_cpu_load(0.3) for _ in range(3))
    finally:
        spinner.kill()
        spinner.wait()
    assert seen >= 0.5, seen
