"""Heat maps are registered to the pixels the model saw: a known bright patch lights up where it is."""

import numpy as np
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
