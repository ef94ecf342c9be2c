"""`ConvRecurrentClassifier` and `build_model`: backbone -> reader -> one linear head per task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from artextract.config import ModelConfig
from artextract.errors import ConfigError
from artextract.models.backbone import Backbone, create_backbone
from artextract.models.reader import Reader
from artextract.models.readers import reader_kind


class ConvRecurrentClassifier(nn.Module):
    def __init__(self, backbone: Backbone, reader: Reader, num_classes: Mapping[str, int],
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.reader = reader
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.heads = nn.ModuleDict({task: nn.Linear(reader.out_features, n) for task, n in num_classes.items()})

    @property
    def tasks(self) -> list[str]:
        return list(self.heads)

    def trained_parameter_count(self, backbone_frozen: bool) -> int:
        """Parameters that training updates: reader and heads, plus the tuned stages when the backbone is frozen,
        plus the whole backbone when it is not."""
        outside = sum(p.numel() for name, p in self.named_parameters() if not name.startswith("backbone."))
        backbone = self.backbone.tuned_parameters() if backbone_frozen else list(self.backbone.parameters())
        return outside + sum(p.numel() for p in backbone)

    def forward(self, inputs: torch.Tensor, from_features: bool = False) -> dict[str, object]:
        """`{"logits": {task: N x C}, "embedding": N x D}`, plus `"attention"` (N x H*W) for attention readers.

        `inputs` are images, or with `from_features` the rows of a frozen backbone's cache (the maps its frozen
        part computes; the tuned stages, if any, run here).
        """
        feature_map = self.backbone.tail(inputs) if from_features else self.backbone(inputs)
        return self.read_map(feature_map)

    def read_map(self, feature_map: torch.Tensor) -> dict[str, object]:
        """Everything after the backbone: reader, dropout, heads (what Grad-CAM differentiates through)."""
        embedding, attention = self.reader(feature_map)
        pooled = self.dropout(embedding)
        out: dict[str, object] = {"logits": {task: head(pooled) for task, head in self.heads.items()},
                                  "embedding": embedding}
        if attention is not None:
            out["attention"] = attention
        return out


def build_model(model_config: ModelConfig, classes: Mapping[str, Sequence[str]]) -> ConvRecurrentClassifier:
    """The model that `model_config` describes, with a head for each of its tasks (class counts from `classes`)."""
    missing = [task for task in model_config.tasks if task not in classes]
    if missing:
        raise ConfigError(f"model.tasks lists {', '.join(missing)} but the data has classes only for "
                          f"{', '.join(classes) or 'no task'}")
    if not model_config.tasks:
        raise ConfigError("model.tasks is empty: name at least one of artist, style, genre")
    kind = reader_kind(model_config.reader)
    backbone = create_backbone(model_config.backbone, model_config.weights, model_config.tuned_stages,
                               model_config.representation, model_config.output_stride)
    reader = kind.build(backbone.num_features, backbone.level_channels, model_config)
    num_classes = {task: len(classes[task]) for task in model_config.tasks}
    return ConvRecurrentClassifier(backbone, reader, num_classes, model_config.dropout)
