"""Every output follows the umask, model.safetensors included (issue 13, item 9: safetensors recreated the file
after the chmod, so collaborators on a cluster could not read the model)."""

import stat

import torch

from artextract.config import ModelConfig
from artextract.core import atomic
from artextract.engine.checkpoint import save_model_file
from artextract.engine.preprocessing import Preprocessing


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_model_file_follows_the_umask_like_every_other_output(tmp_path):
    save_model_file(tmp_path / "model.safetensors", torch.nn.Linear(2, 2), {"artist": ["a", "b"]}, ModelConfig(),
                    Preprocessing(cache_size=36, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3))
    atomic.write_text(tmp_path / "notes.txt", "x")
    assert _mode(tmp_path / "notes.txt") == atomic._FILE_MODE  # 0o666 minus the umask
    assert _mode(tmp_path / "model.safetensors") == atomic._FILE_MODE
