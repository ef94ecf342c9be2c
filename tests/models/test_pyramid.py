"""The pyramid representation: each backbone stage's channel statistics, read as a sequence of stages."""

import shutil
from pathlib import Path

import pytest
import torch

from artextract.config import ModelConfig
from artextract.errors import ConfigError
from artextract.models import build_model
from artextract.stages.train import train

from conftest import tiny_train_config

CLASSES = {"style": ["a", "b", "c"]}


@pytest.mark.parametrize("reader", ["gru", "none"])
def test_the_pyramid_holds_every_stages_moments_and_trains(reader):
    torch.manual_seed(0)
    config = ModelConfig(backbone="test_efficientnet", tasks=["style"], reader=reader, hidden_size=8,
                         representation="pyramid")
    model = build_model(config, CLASSES).eval()
    images = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        pyramid = model.backbone(images)
        last_map = model.backbone.model.forward_features(images)
    levels = model.backbone.level_channels
    assert len(levels) == len(model.backbone.model.blocks) + 1  # every stage, then the head convolution
    assert pyramid.shape == (4, sum(levels), 1, 1)
    # The last level is the last map's channel means and standard deviations.
    last = pyramid.flatten(1)[:, -levels[-1]:]
    torch.testing.assert_close(last[:, : levels[-1] // 2], last_map.mean(dim=(2, 3)))
    spread = (last_map.var(dim=(2, 3), unbiased=False) + 1e-5).sqrt()  # a small floor keeps gradients finite
    torch.testing.assert_close(last[:, levels[-1] // 2:], spread)
    model.train()
    logits = model(pyramid, from_features=True)["logits"]["style"]
    logits.sum().backward()
    assert logits.shape == (4, 3)
    trained = [p for name, p in model.named_parameters() if not name.startswith("backbone.")]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained if p.requires_grad)


def test_a_pyramid_needs_a_staged_cnn_without_tuned_stages():
    with pytest.raises(ConfigError, match="pyramid needs a staged CNN"):
        build_model(ModelConfig(backbone="test_vit", tasks=["style"], representation="pyramid"), CLASSES)
    with pytest.raises(ConfigError, match="tuned_stages=0"):
        build_model(ModelConfig(backbone="test_resnet", tasks=["style"], representation="pyramid", tuned_stages=1),
                    CLASSES)


def test_pyramid_runs_train_from_their_own_cache_and_evaluate(prepared_small, tmp_path, run_cli, caplog):
    data = Path(shutil.copytree(prepared_small, tmp_path / "data",
                                ignore=shutil.ignore_patterns("features", ".artextract.lock")))
    config = tiny_train_config(epochs=2, freeze_backbone=True)
    train(data, tmp_path / "map", config)
    config.model.representation = "pyramid"
    assert config.model.reader == "gru"
    with caplog.at_level("WARNING"):
        train(data, tmp_path / "pyramid", config)
    assert "feature grid" not in caplog.text  # its GRU reads the stages, not the positions of the last map
    folders = sorted(p.name for p in (data / "features").iterdir())
    assert len(folders) == 2 and any("-pyramid-" in name for name in folders)  # never the last map's cache
    result = run_cli("evaluate", "--run", tmp_path / "pyramid", "--batch-size", "16")
    assert result.code == 0, result.stderr
