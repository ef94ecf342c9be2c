import itertools
import time

import pytest
import torch
import torchvision

from artextract.config import ModelConfig
from artextract.errors import ArtExtractError, ConfigError
from artextract.models import build_model
from artextract.models import weights as weights_module
from artextract.models.reader import scan_order, scan_sequence

CLASSES = {"artist": [f"a{i}" for i in range(5)], "style": [f"s{i}" for i in range(7)],
           "genre": [f"g{i}" for i in range(3)]}
COMBINATIONS = [
    *[("gru" if i % 2 else "lstm", scan, pooling, True)
      for i, (scan, pooling) in enumerate(itertools.product(["rows", "cols", "snake", "2d"],
                                                            ["last", "mean", "attention"]))],
    *[(cell, scan, pooling, False) for cell, scan, pooling in [("gru", "rows", "last"), ("lstm", "snake", "mean"),
                                                               ("gru", "cols", "attention")]],
    ("none", "rows", "mean", False),
]


def _tiny(**overrides) -> ModelConfig:
    return ModelConfig(**{"backbone": "test_resnet", "hidden_size": 8, **overrides})


@pytest.mark.parametrize(("reader", "scan", "pooling", "bidirectional"), COMBINATIONS)
def test_every_reader_gives_shapes_and_trains_every_parameter(reader, scan, pooling, bidirectional):
    torch.manual_seed(0)
    model = build_model(_tiny(reader=reader, scan=scan, pooling=pooling, bidirectional=bidirectional,
                              layers=2 if scan == "snake" else 1, dropout=0.1), CLASSES)
    for module in model.modules():  # timm zero-initialises the last norm of each block; undo it so that
        if isinstance(module, torch.nn.BatchNorm2d):  # every weight upstream gets a gradient to check
            torch.nn.init.ones_(module.weight)
    images = torch.randn(3, 3, 75, 61)  # odd sizes: a 3 x 2 map
    out = model(images)
    assert {t: tuple(v.shape) for t, v in out["logits"].items()} == {"artist": (3, 5), "style": (3, 7),
                                                                     "genre": (3, 3)}
    assert out["embedding"].shape[0] == 3
    if pooling == "attention" and reader != "none":
        assert out["attention"].shape == (3, 6)
        torch.testing.assert_close(out["attention"].sum(dim=1), torch.ones(3))
    else:
        assert "attention" not in out
    loss = sum(v.logsumexp(dim=1).sum() for v in out["logits"].values()) + out["embedding"].pow(2).sum()
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("size", [(16, 16), (32, 32), (40, 130)])
def test_tiny_maps_work_down_to_one_cell(size):
    model = build_model(_tiny(scan="2d", pooling="attention"), CLASSES)
    out = model(torch.randn(2, 3, *size))
    assert out["logits"]["artist"].shape == (2, 5) and torch.isfinite(out["embedding"]).all()


def test_scan_orders_visit_the_grid_as_named():
    grid = torch.arange(6.0).view(1, 1, 2, 3)
    assert scan_sequence(grid, "rows").flatten().tolist() == [0, 1, 2, 3, 4, 5]
    assert scan_sequence(grid, "cols").flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert scan_sequence(grid, "snake").flatten().tolist() == [0, 1, 2, 5, 4, 3]
    assert scan_order(2, 3, "snake").tolist() == [0, 1, 2, 5, 4, 3]


def test_attention_is_returned_in_grid_order():
    """The same attention module on a cols scan must put weight on the same grid cells as on a rows scan."""
    torch.manual_seed(0)
    rows = build_model(_tiny(scan="rows", pooling="attention", bidirectional=False), CLASSES).eval()
    cols = build_model(_tiny(scan="cols", pooling="attention", bidirectional=False), CLASSES).eval()
    cols.load_state_dict(rows.state_dict())
    # A GRU whose update gate is shut (z = 0) and with no recurrent weights sees each position alone:
    # h_t = n(x_t). Then the two models differ only in the order they read the grid.
    for model in (rows, cols):
        rnn, hidden = model.reader.rnn, model.reader.hidden_size
        with torch.no_grad():
            rnn.weight_hh_l0.zero_()
            rnn.weight_ih_l0[hidden: 2 * hidden].zero_()
            rnn.bias_ih_l0[hidden: 2 * hidden].fill_(-1e4)
    images = torch.randn(2, 3, 75, 61)
    with torch.no_grad():
        torch.testing.assert_close(rows(images)["attention"], cols(images)["attention"])


def test_a_smaller_output_stride_gives_the_reader_a_finer_grid_from_the_same_weights():
    """The test suite's pipelines run test_resnet at 32 px with output_stride 8: a 4 x 4 grid, not one cell."""
    from artextract.config import Config
    from artextract.config_files import apply_mapping
    from tests.conftest import tiny_train_config

    config = tiny_train_config()
    model = build_model(config.model, CLASSES).eval()
    size = config.train.image_size
    assert model.backbone(torch.zeros(1, 3, size, size)).shape[2:] == (4, 4)
    coarse = build_model(_tiny(), CLASSES).eval()
    assert coarse.backbone(torch.zeros(1, 3, size, size)).shape[2:] == (1, 1)
    assert set(coarse.backbone.state_dict()) == set(model.backbone.state_dict())  # dilated, same weights
    assert model.backbone.cache_tag == "os8" and coarse.backbone.cache_tag == ""  # never one feature cache
    with pytest.raises(ConfigError, match="cannot be dilated"):
        build_model(_tiny(backbone="vit_tiny_patch16_224", output_stride=8), CLASSES)
    with pytest.raises(ConfigError, match="output_stride"):
        apply_mapping(Config(), {"model": {"output_stride": 4}}).validate()


def test_heads_follow_the_configured_tasks():
    model = build_model(_tiny(tasks=["style"]), CLASSES).eval()
    assert model.tasks == ["style"] and list(model(torch.randn(1, 3, 32, 32))["logits"]) == ["style"]
    with pytest.raises(ConfigError, match=r"model\.tasks lists painter"):
        build_model(_tiny(tasks=["painter"]), CLASSES)


def test_other_backbone_families_give_a_map():
    for name, size in [("test_convnext", 64), ("test_vit", 160), ("test_efficientnet", 64)]:
        model = build_model(_tiny(backbone=name, pooling="attention"), CLASSES).eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, size, size))
        assert out["logits"]["genre"].shape == (1, 3), name
        assert out["attention"].shape[1] > 1, name


@pytest.mark.parametrize(("name", "suggested"), [
    ("resnet-18", "did you mean resnet18,"), ("efficientnet-lite0", "tf_efficientnet_lite0"),
    ("convnxt_tiny", "did you mean convnext_tiny,"), ("zzzz", "`timm.list_models()` lists them"),
])
def test_unknown_backbone_is_a_clear_error_suggesting_close_names(name, suggested):
    with pytest.raises(ArtExtractError, match=f"unknown backbone '{name}'") as refused:
        build_model(_tiny(backbone=name), CLASSES)
    assert suggested in str(refused.value)


# ------------------------------------------------------------------ weights


@pytest.fixture(scope="module")
def torchvision_resnet18():
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None, num_classes=1000).state_dict()


@pytest.mark.parametrize("form", ["pth", "safetensors", "wrapped", "dataparallel"])
def test_torchvision_resnet18_weights_load(tmp_path, torchvision_resnet18, form):
    from safetensors.torch import save_file

    path = tmp_path / ("w.safetensors" if form == "safetensors" else "w.pth")
    if form == "safetensors":
        save_file({k: v.contiguous() for k, v in torchvision_resnet18.items()}, str(path))
    elif form == "wrapped":
        torch.save({"epoch": 3, "state_dict": torchvision_resnet18}, path)
    elif form == "dataparallel":
        torch.save({f"module.{k}": v for k, v in torchvision_resnet18.items()}, path)
    else:
        torch.save(torchvision_resnet18, path)
    model = build_model(ModelConfig(backbone="resnet18", weights=str(path), hidden_size=8), CLASSES)
    loaded = model.backbone.model.state_dict()
    for key, value in torchvision_resnet18.items():
        if not key.startswith("fc."):  # the 1000-class ImageNet head is dropped
            torch.testing.assert_close(loaded[key], value, msg=key)


def test_weights_of_a_tagged_timm_name_bring_that_tags_preprocessing(tmp_path):
    """`--backbone arch.tag --weights FILE`: the tag names whose normalisation the weights were trained with."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(3)
    source = timm.create_model("test_convnext.r160_in1k", pretrained=False, num_classes=0)
    path = tmp_path / "convnext.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = build_model(ModelConfig(backbone="test_convnext.r160_in1k", weights=str(path), reader="none"), CLASSES)
    assert model.backbone.mean == model.backbone.std == (0.5, 0.5, 0.5)  # not ImageNet's usual statistics
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.backbone.model.state_dict()[key], value, msg=key)


def test_mismatched_weights_name_the_keys(tmp_path, torchvision_resnet18):
    wrong = dict(torchvision_resnet18)
    wrong["layer1.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)
    del wrong["layer4.1.bn2.bias"]
    wrong["extra.weight"] = torch.zeros(1)
    path = tmp_path / "wrong.pth"
    torch.save(wrong, path)
    with pytest.raises(ArtExtractError) as err:
        build_model(ModelConfig(backbone="resnet18", weights=str(path)), CLASSES)
    message = str(err.value)
    assert "layer1.0.conv1.weight (64, 64, 5, 5) vs (64, 64, 3, 3)" in message
    assert "missing 1 keys (layer4.1.bn2.bias)" in message and "unexpected 1 keys (extra.weight)" in message


def test_missing_or_garbage_weight_files(tmp_path):
    with pytest.raises(ArtExtractError, match="does not exist"):
        build_model(_tiny(weights=str(tmp_path / "nope.pth")), CLASSES)
    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(b"\x00garbage")
    with pytest.raises(ArtExtractError, match="not a readable safetensors"):
        build_model(_tiny(weights=str(garbage)), CLASSES)


def test_imagenet_offline_fails_fast_naming_weights(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    probes = []
    monkeypatch.setattr(weights_module, "hub_reachable", lambda timeout=3.0: probes.append(timeout) or False)
    start = time.perf_counter()
    with pytest.raises(ArtExtractError, match="--weights PATH"):
        build_model(ModelConfig(backbone="resnet18", weights="imagenet"), CLASSES)
    assert probes and time.perf_counter() - start < 5


def test_imagenet_with_hub_offline_mode_and_no_cached_copy_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(ArtExtractError, match="--weights PATH"):
        build_model(ModelConfig(backbone="resnet18", weights="imagenet"), CLASSES)
    assert time.perf_counter() - start < 10
