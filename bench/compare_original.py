"""The original notebook's way against ArtExtract, on the same generated originals, the same training images and
the same number of epochs, in one run.

- original: every epoch opens and decodes each full-size JPEG with Pillow, resizes it to 224 x 224
  (torchvision's Resize, ToTensor, Normalize) in DataLoader workers, and trains ResNet18 + GRU(256) in fp32
  (the prototype's model: the 7 x 7 map read row by row, the last state into a linear head);
- ArtExtract, the same model: `prepare` builds the 256 px cache once (timed, counted), then `train` reads uint8
  rows, crops 224 px and runs channels-last (its selection pass every epoch included);
- ArtExtract, the CPU recipe's way with the same backbone: frozen ResNet18 whose maps are cached once (timed,
  counted), the reader trained from them.

Prints seconds per epoch, the whole run (one-off work included) and the speed-ups. ImageNet weights play no part
in speed, so every network starts from random weights (nothing to download).

Usage: python bench/compare_original.py [--images 504] [--epochs 2] [--original-size 1200] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd
import torch
from PIL import Image
from torch import nn

from artextract.config import Config, ModelConfig, PrepareConfig, SynthConfig, TrainConfig
from artextract.data.synth import generate_dataset
from artextract.stages.prepare import prepare_dataset
from artextract.stages.train import train

ARTISTS = 8


class NotebookDataset(torch.utils.data.Dataset):
    """The prototype's dataset: a path and a label per row, decoded and resized on every access."""

    def __init__(self, paths: list[Path], labels: list[int]) -> None:
        from torchvision import transforms

        self.paths, self.labels = paths, labels
        self.transform = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB")), self.labels[index]


class NotebookModel(nn.Module):
    """ResNet18 without its pooling and head, the 7 x 7 map as a 49-step sequence, GRU(256), the last state."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        from torchvision.models import resnet18

        self.cnn = nn.Sequential(*list(resnet18(weights=None).children())[:-2])
        self.gru = nn.GRU(512, 256, batch_first=True)
        self.fc = nn.Linear(256, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        sequence = self.cnn(images).flatten(2).transpose(1, 2)
        outputs, _ = self.gru(sequence)
        return self.fc(outputs[:, -1])


def notebook_epochs(paths: list[Path], labels: list[int], epochs: int, workers: int, batch: int) -> list[float]:
    loader = torch.utils.data.DataLoader(NotebookDataset(paths, labels), batch_size=batch, shuffle=True,
                                         num_workers=workers)
    model = NotebookModel(max(labels) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        for images, targets in loader:
            loss = nn.functional.cross_entropy(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    return seconds


def artextract_config(epochs: int, batch: int, frozen: bool) -> Config:
    model = ModelConfig(tasks=["artist"], backbone="resnet18", reader="gru", scan="rows", hidden_size=256,
                        bidirectional=False, pooling="last")
    return Config(model=model, train=TrainConfig(epochs=epochs, batch_size=batch, image_size=224, patience=0,
                                                 accelerator="cpu", workers=0, freeze_backbone=frozen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=504, help="generated originals (>= 500)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--original-size", type=int, default=1200, help="short side of the generated originals")
    parser.add_argument("--workers", type=int, default=2, help="the notebook's DataLoader workers")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synth = SynthConfig(artists=ARTISTS, per_artist=-(-args.images // ARTISTS), size=args.original_size,
                            val_fraction=0.1, workers=0)
        generate_dataset(root / "synth", synth)
        started = time.perf_counter()
        prepare_dataset(root / "synth" / "csv", root / "synth" / "wikiart", root / "data",
                        PrepareConfig(image_size=256, select_fraction=0.1))
        prepare_seconds = time.perf_counter() - started
        manifest = pd.read_parquet(root / "data" / "manifest.parquet")
        rows = manifest[(manifest["split"] == "train") & (manifest["status"] == "ok")
                        & (manifest["label_artist"] >= 0)]
        paths = [root / "synth" / "wikiart" / p for p in rows["path"]]
        notebook = notebook_epochs(paths, rows["label_artist"].astype(int).tolist(), args.epochs, args.workers,
                                   args.batch)
        runs = {}
        for name, frozen in (("same model", False), ("frozen backbone", True)):
            started = time.perf_counter()
            config = artextract_config(args.epochs, args.batch, frozen)
            result = train(root / "data", root / name.replace(" ", "-"), config)
            total = time.perf_counter() - started
            runs[name] = (pd.read_csv(result.run.metrics)["epoch_seconds"].tolist(), total)
    per_epoch = sum(notebook) / len(notebook)
    print(f"{len(paths)} training images ({args.original_size} px originals), {args.epochs} epochs, batch "
          f"{args.batch}, CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)")
    print(f"  original notebook: {per_epoch:7.1f} s per epoch ({len(paths) / per_epoch:6.1f} img/s), whole run "
          f"{sum(notebook):7.1f} s")
    for name, (epochs, total) in runs.items():
        mean = sum(epochs) / len(epochs)
        whole = total + prepare_seconds
        print(f"  ArtExtract, {name:15s}: {mean:7.1f} s per epoch ({len(paths) / mean:6.1f} img/s; "
              f"{per_epoch / mean:5.1f}x), whole run {whole:7.1f} s incl. prepare {prepare_seconds:.1f} s and any "
              f"feature cache ({sum(notebook) / whole:5.1f}x)")


if __name__ == "__main__":
    main()
