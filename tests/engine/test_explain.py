"""Heat maps are registered to the pixels the model saw: a known bright patch lights up where it is."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from artextract.engine.explain import grad_cam
from artextract.engine.preprocessing import Preprocessing
from artextract.models.classifier import ConvRecurrentClassifier
from artextract.models.reader import GapReader


class _Brightness(nn.Module):
    """A stand-in backbone whose 2-channel feature map is the local brightness at stride 4."""

    num_features, mean, std = 2, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(images.mean(dim=1, keepdim=True), 4).repeat(1, 2, 1, 1)


def test_grad_cam_peaks_on_a_known_patch_of_the_evaluation_view():
    model = ConvRecurrentClassifier(_Brightness(), GapReader(2), {"artist": 2})
    with torch.no_grad():
        model.heads["artist"].weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
    preprocessing = Preprocessing(cache_size=40, image_size=32, mean=(0.0,) * 3, std=(1.0,) * 3)
    square = np.zeros((40, 40, 3), np.uint8)
    square[8:16, 24:32] = 255  # rows 4-11, columns 20-27 of the central 32 x 32 view
    cam = grad_cam(model, torch.from_numpy(square)[None], "artist", torch.tensor([0]), preprocessing)[0]
    view = preprocessing.visible(square)
    assert cam.shape == view.shape[:2] == (32, 32)
    hot = cam > 0.5
    rows, cols = np.nonzero(hot)
    assert hot.any() and rows.min() >= 2 and rows.max() <= 13 and cols.min() >= 18 and cols.max() <= 29
    bright = view.mean(axis=2) > 0
    assert cam[bright].mean() > 5 * cam[~bright].mean()
    model.train()  # explaining a model mid-training leaves it training (it used to be switched to eval silently)
    grad_cam(model, torch.from_numpy(square)[None], "artist", torch.tensor([0]), preprocessing)
    assert model.training


class _PassThrough(nn.Module):
    """An RNN stand-in whose output at each position is its input there (so attention scores see the map)."""

    def forward(self, sequence: torch.Tensor) -> tuple[torch.Tensor, None]:
        return sequence, None


@pytest.mark.parametrize("scan", ["rows", "cols", "snake", "2d"])
def test_attention_maps_peak_on_a_known_patch_whatever_the_scan(scan):
    """The reader's attention comes back in grid order and is drawn over the view the model saw: a scan whose
    order was not undone (or a transposed map) would light up another place of this off-centre patch."""
    from artextract.engine.explain import attention_maps
    from artextract.models.reader import SequenceReader

    reader = SequenceReader(2, scan=scan, hidden_size=1, bidirectional=True, pooling="attention")
    reader.rnn = _PassThrough()
    if scan == "2d":
        reader.column_rnn = _PassThrough()
    with torch.no_grad():  # score = 20 * tanh(brightness): the bright cells take nearly all the weight
        first, second = reader.attention.score[0], reader.attention.score[2]
        first.weight.fill_(1.0), first.bias.zero_(), second.weight.fill_(20.0), second.bias.zero_()
    model = ConvRecurrentClassifier(_Brightness(), reader, {"artist": 2})
    preprocessing = Preprocessing(cache_size=40, image_size=32, mean=(0.0,) * 3, std=(1.0,) * 3)
    square = np.zeros((40, 40, 3), np.uint8)
    square[8:16, 24:32] = 255  # rows 4-11, columns 20-27 of the view: grid cells (1-2, 5-6) of the 8 x 8 map
    maps = attention_maps(model, torch.from_numpy(square)[None], preprocessing)
    assert maps is not None and maps.shape == (1, 32, 32)
    rows, cols = np.nonzero(maps[0] > 0.5 * maps[0].max())
    assert rows.min() >= 4 and rows.max() <= 11 and cols.min() >= 20 and cols.max() <= 27
    bright = preprocessing.visible(square).mean(axis=2) > 0
    assert maps[0][bright].mean() > 20 * maps[0][~bright].mean()


def _pyramid_model(seed: int) -> ConvRecurrentClassifier:
    from artextract.config import ModelConfig
    from artextract.models import build_model

    torch.manual_seed(seed)
    config = ModelConfig(backbone="test_efficientnet", tasks=["style"], reader="none", representation="pyramid")
    return build_model(config, {"style": ["a", "b", "c", "d"]}).eval()


def test_a_pyramid_model_is_explained_by_a_spatial_class_dependent_map_that_random_weights_change():
    """The pyramid reads only channel statistics, so a Grad-CAM at its end is a uniform wash; the gradient through
    a stage's statistics back to its map is not. Sanity checks after Adebayo et al. (2018): the map depends on the
    class asked about and on the trained weights (a model with other weights draws another map)."""
    from artextract.engine.explain import explanation_method

    preprocessing = Preprocessing(cache_size=72, image_size=64, mean=(0.5,) * 3, std=(0.5,) * 3)
    rng = np.random.default_rng(0)
    squares = rng.integers(0, 60, (3, 72, 72, 3), dtype=np.uint8)
    squares[:, 10:30, 40:66] = rng.integers(150, 256, (3, 20, 26, 3), dtype=np.uint8)  # a textured patch
    model = _pyramid_model(0)
    maps = {c: grad_cam(model, torch.from_numpy(squares), "style", torch.full((3,), c), preprocessing)
            for c in range(4)}
    for cams in maps.values():
        assert cams.shape == (3, 64, 64) and np.isfinite(cams).all()
        assert (cams.reshape(3, -1).std(axis=1) > 0.05).all()  # spatial, not a wash
    assert any(not np.allclose(maps[0], maps[c], atol=0.05) for c in range(1, 4))  # class-dependent
    other = grad_cam(_pyramid_model(1), torch.from_numpy(squares), "style", torch.zeros(3, dtype=torch.long),
                     preprocessing)
    assert not np.allclose(other, maps[0], atol=0.05)  # weight-dependent
    assert "pyramid stage" in explanation_method(model)
