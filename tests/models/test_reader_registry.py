"""A new reader is one class and one registry line: it then trains, evaluates, ablates and compares."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn


class MaxReader(nn.Module):
    """Global max pooling: the whole of a new reader."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.out_features = channels

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, None]:
        return feature_map.amax(dim=(2, 3)), None


@pytest.fixture
def max_reader(monkeypatch):
    from artextract.models import readers

    kind = readers.ReaderKind("max", "global max pooling", lambda channels, levels, model: MaxReader(channels),
                              describe=lambda model: "global max pooling", label=lambda model: "max",
                              sequential=False)
    monkeypatch.setitem(readers.READERS, "max", kind)  # the one line a contributor adds
    return kind


def test_a_registered_reader_trains_evaluates_ablates_and_compares(max_reader, run_cli, prepared_small, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  backbone: test_resnet\n  output_stride: 8\n  hidden_size: 8\n  tasks: [artist]\n"
                      "train:\n  epochs: 1\n  batch_size: 16\n  image_size: 32\n  workers: 0\n  accelerator: cpu\n"
                      "  cpu_threads: 1\n")
    assert "max (global max pooling)" in " ".join(run_cli("train", "--help").stdout.replace("│", " ").split())
    runs = {}
    for reader in ("max", "none"):
        runs[reader] = tmp_path / reader
        trained = run_cli("train", "--data", prepared_small, "--out", runs[reader], "--config", config,
                          "--reader", reader)
        assert trained.code == 0, trained.stderr
        assert f"+ global {'max' if reader == 'max' else 'average'} pooling;" in trained.stderr  # start-up summary
        assert run_cli("evaluate", "--run", runs[reader], "--batch-size", "32").code == 0
    compared = run_cli("compare", runs["max"], runs["none"])
    assert compared.code == 0, compared.stderr
    assert "test_resnet (none) + max" in compared.stdout and "test_resnet (none) + GAP" in compared.stdout
    ablated = run_cli("ablate", "--data", prepared_small, "--out", tmp_path / "ab", "--config", config,
                      "--variants", "gap,max", "--seeds", "0")
    assert ablated.code == 0, ablated.stderr
    saved = json.loads((tmp_path / "ab" / "ablation.json").read_text())
    table = saved["table"]
    assert [(v["a"], v["b"]) for v in saved["verdicts"]] == [("gap", "max")]
    assert table["max"]["artist"]["trainable_parameters"] == table["gap"]["artist"]["trainable_parameters"]


def test_an_unregistered_reader_is_named_with_the_choices(run_cli, prepared_small, tmp_path):
    result = run_cli("train", "--data", prepared_small, "--out", tmp_path / "run", "--reader", "tcn",
                     "--backbone", "test_resnet")
    assert result.code == 2 and "must be one of none, gru, lstm, mlp, got 'tcn'" in result.stderr
    assert not (tmp_path / "run").exists()
