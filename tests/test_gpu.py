"""GPU paths (bf16 autocast, channels_last, torch.compile, cuDNN RNNs); run on the device machine with -m gpu."""

import numpy as np
import pandas as pd
import pytest
import torch

from artextract.stages.train import train

from conftest import tiny_train_config

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("compile_", [False, True])
def test_bf16_channels_last_training_on_the_gpu(prepared_small, tmp_path, compile_):
    config = tiny_train_config(epochs=2, accelerator="cuda", precision="bf16-mixed", channels_last=True,
                               compile=compile_)
    result = train(prepared_small, tmp_path / "run", config)
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert result.state.epoch == 2 and metrics["train_loss"].notna().all()
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_grad_cam_through_a_cudnn_rnn_in_eval_mode(evaluated_run):
    from artextract.engine.checkpoint import load_model_file
    from artextract.engine.explain import grad_cam

    model, meta = load_model_file(evaluated_run / "model.safetensors")
    side = meta.preprocessing.cache_size
    images = torch.randint(0, 256, (4, side, side, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 3]) % len(meta.classes["artist"])
    on_cpu = grad_cam(model.eval(), images, "artist", targets, meta.preprocessing)
    model = model.cuda().eval()
    cams = grad_cam(model, images, "artist", targets, meta.preprocessing)
    view = meta.preprocessing.view_box[1]
    assert cams.shape == (4, view, view) and not model.training
    assert on_cpu.max() > 0  # a map to compare, not four blank ones
    np.testing.assert_allclose(cams, on_cpu, atol=2e-2)  # the GPU path (cuDNN off for the RNN) explains the same
