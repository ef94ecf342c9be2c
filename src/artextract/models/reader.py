"""Readers: turn an N x C x H x W feature map into one embedding per image.

`SequenceReader` scans the map into a sequence (rows, columns, snake, or ReNet-style 2-D: a bidirectional pass
along each row, then one along each column) and reads it with a GRU or LSTM; the outputs are pooled by the last
state, the mean, or learned attention (whose weights over the H*W positions are returned). `GapReader` is the
no-recurrence baseline: global average pooling. `PyramidReader` reads a pyramid representation (each backbone
stage's channel statistics) as a sequence of stages, fine to coarse (and back, when bidirectional).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class Reader(Protocol):
    """What the classifier needs of a reader (registered in models/readers.py): the embedding's width, and a
    forward from the feature map to (N x out_features embedding, N x (H*W) attention in row-major grid order or
    None)."""

    out_features: int

    def __call__(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...


def scan_sequence(feature_map: torch.Tensor, scan: str) -> torch.Tensor:
    """N x C x H x W -> N x L x C in the given scan order (L = H*W); position i of the result is the grid cell
    whose row-major index `scan_order` gives."""
    n, c, h, w = feature_map.shape
    if scan == "rows":
        return feature_map.flatten(2).transpose(1, 2)
    if scan == "cols":
        return feature_map.transpose(2, 3).flatten(2).transpose(1, 2)
    if scan == "snake":
        rows = feature_map.permute(0, 2, 3, 1)  # N x H x W x C
        flipped = rows.flip(2)
        odd = torch.arange(h, device=feature_map.device) % 2 == 1
        return torch.where(odd.view(1, h, 1, 1), flipped, rows).reshape(n, h * w, c)
    raise ValueError(f"unknown scan order {scan!r}")


def scan_order(h: int, w: int, scan: str) -> torch.Tensor:
    """For each sequence position, the row-major index of the grid cell it reads (to map attention back)."""
    grid = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    if scan == "2d":
        return grid.flatten().long()
    return scan_sequence(grid, scan).flatten().long()


class _Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim // 2 or 1), nn.Tanh(), nn.Linear(dim // 2 or 1, 1))

    def forward(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.score(outputs).squeeze(-1).float().softmax(dim=1).to(outputs.dtype)
        return torch.einsum("nl,nld->nd", weights, outputs), weights


class SequenceReader(nn.Module):
    def __init__(self, in_channels: int, cell: str = "gru", scan: str = "rows", hidden_size: int = 256,
                 layers: int = 1, bidirectional: bool = True, pooling: str = "mean", reduce_channels: int = 0) -> None:
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"unknown recurrent cell {cell!r}")
        if pooling not in ("last", "mean", "attention"):
            raise ValueError(f"unknown pooling {pooling!r}")
        if scan not in ("rows", "cols", "snake", "2d"):
            raise ValueError(f"unknown scan order {scan!r}")
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.scan, self.pooling = scan, pooling
        # A learned 1x1 projection: the RNN's input-to-hidden cost scales with the channels it reads.
        self.reduce = (nn.Sequential(nn.Conv2d(in_channels, reduce_channels, 1), nn.ReLU())
                       if reduce_channels else nn.Identity())
        in_channels = reduce_channels or in_channels
        # ReNet reads in both directions along each axis, whatever `bidirectional` says.
        self.bidirectional = bidirectional or scan == "2d"
        directions = 2 if self.bidirectional else 1
        self.hidden_size = hidden_size
        self.rnn = rnn(in_channels, hidden_size, num_layers=layers, batch_first=True,
                       bidirectional=self.bidirectional)
        if scan == "2d":
            self.column_rnn = rnn(hidden_size * directions, hidden_size, num_layers=layers, batch_first=True,
                                  bidirectional=True)
        self.out_features = hidden_size * directions
        self.attention = _Attention(self.out_features) if pooling == "attention" else None

    def _last(self, outputs: torch.Tensor) -> torch.Tensor:
        """Forward direction's final output, concatenated with the backward direction's (at position 0)."""
        if not self.bidirectional:
            return outputs[:, -1]
        h = self.hidden_size
        return torch.cat([outputs[:, -1, :h], outputs[:, 0, h:]], dim=-1)

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N x D embedding, N x (H*W) attention weights in row-major grid order, or None)."""
        feature_map = self.reduce(feature_map)
        n, c, h, w = feature_map.shape
        if self.scan != "2d":
            # cuDNN wants a contiguous N x L x C input; the scans return views.
            outputs, _ = self.rnn(scan_sequence(feature_map, self.scan).contiguous())
            last = self._last(outputs) if self.pooling == "last" else None
        else:
            rows = feature_map.permute(0, 2, 3, 1).reshape(n * h, w, c)
            row_out, _ = self.rnn(rows)  # (N*H) x W x D
            columns = row_out.reshape(n, h, w, -1).transpose(1, 2).reshape(n * w, h, -1)
            col_out, _ = self.column_rnn(columns.contiguous())  # (N*W) x H x D
            last = self._last(col_out).reshape(n, w, -1).mean(dim=1) if self.pooling == "last" else None
            outputs = col_out.reshape(n, w, h, -1).transpose(1, 2).reshape(n, h * w, -1)  # row-major
        if self.pooling == "last":
            return last, None
        if self.pooling == "mean":
            return outputs.mean(dim=1), None
        assert self.attention is not None
        pooled, weights = self.attention(outputs)
        if self.scan != "2d":  # back from scan order to the row-major grid, so heat maps need no scan logic
            inverse = torch.argsort(scan_order(h, w, self.scan)).to(weights.device)
            weights = weights[:, inverse]
        return pooled, weights


class GapReader(nn.Module):
    """Global average pooling: the baseline without recurrence."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.out_features = in_channels

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, None]:
        return feature_map.mean(dim=(2, 3)), None


class MlpReader(nn.Module):
    """Global average pooling, then one hidden layer (Linear, GELU, dropout): a non-linear reader of pooled
    features (for the pyramid, of the concatenated stage statistics), without recurrence."""

    def __init__(self, in_channels: int, hidden_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(in_channels, hidden_size), nn.GELU(), nn.Dropout(dropout))
        self.out_features = hidden_size

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.hidden(feature_map.mean(dim=(2, 3))), None


class PyramidReader(nn.Module):
    """Each level's statistics projected to `width` channels and normalised, then read in order by a
    `SequenceReader` as a 1 x levels map (so pooling works as for any map; attention weights over stages are not
    a picture, so none are returned)."""

    def __init__(self, level_channels: list[int], sequence: SequenceReader, width: int) -> None:
        super().__init__()
        self.level_channels = list(level_channels)
        self.project = nn.ModuleList(nn.Sequential(nn.Linear(c, width), nn.LayerNorm(width), nn.ReLU())
                                     for c in level_channels)
        self.sequence = sequence
        self.out_features = sequence.out_features

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, None]:
        levels = feature_map.flatten(1).split(self.level_channels, dim=1)
        steps = torch.stack([project(level) for project, level in zip(self.project, levels, strict=True)], dim=2)
        embedding, _ = self.sequence(steps.unsqueeze(2))  # N x width x 1 x levels
        return embedding, None
