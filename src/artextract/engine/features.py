"""The frozen backbone's feature maps, computed once per (backbone, weights, preprocessing, cache) into
DATA/features/<backbone>-<image size>px[-tune<n>]-<key>/, so a frozen-backbone run trains only the reader and
heads (and the last n stages, with `model.tuned_stages`: the maps are then those entering them).

Files: `layout.json` (what the maps were computed from, their shape), `features.f16` (N x C x H x W float16,
row i = cache row i, memory-mapped), `done.npy` (which rows are computed). The maps are of the evaluation view
(the central crop, no augmentation), through the shared inference loop. Interrupted builds resume; a change of
backbone, weights, image size, normalisation or cache contents gives another key, hence another folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artextract.core.atomic import write_json
from artextract.core.lock import FolderLock
from artextract.core.outdir import clean_temporaries
from artextract.core.progress import Progress, log
from artextract.core.row_store import save_array, saving_progress, sync_file
from artextract.data.cache_files import open_cache, read_layout
from artextract.engine.data import DataInfo, cache_contents
from artextract.engine.inference import forward_batches, map_shape, run_model
from artextract.engine.preprocessing import Preprocessing
from artextract.engine.runtime import Runtime
from artextract.errors import ArtExtractError
from artextract.models.backbone import Backbone

FEATURES_FILE, DONE_FILE, LAYOUT_FILE = "features.f16", "done.npy", "layout.json"
# On a CPU small batches stay in the caches: Lite0 at 224 px on 2 cores ran 44-60 img/s at batch 4-16 against
# 30 at 64 (bench/bench_features.py). A GPU takes the training batch.
CPU_FEATURE_BATCH = 16


def backbone_batch_size(batch_size: int, device: torch.device) -> int:
    """The batch for a pass through the backbone: the given one on a GPU, at most CPU_FEATURE_BATCH on a CPU."""
    return batch_size if device.type == "cuda" else min(batch_size, CPU_FEATURE_BATCH)


@dataclass(frozen=True)
class FeatureLayout:
    backbone: str
    key: str  # digest of the weights, the preprocessing and the image cache's fingerprint
    count: int  # rows (= cache rows)
    shape: tuple[int, int, int]  # C x H x W of one map
    dtype: str = "float16"

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape)) * 2

    @property
    def file_bytes(self) -> int:
        return self.count * self.row_bytes

    def file_whole(self, folder: Path) -> bool:
        """Whether `folder` holds a maps file long enough for every row (not deleted, not cut short)."""
        maps_file = folder / FEATURES_FILE
        return maps_file.is_file() and maps_file.stat().st_size >= self.file_bytes


def feature_key(frozen: nn.Module, preprocessing: Preprocessing, contents: str, tag: str = "") -> str:
    """Changes whenever the maps would: any weight of the part computing them, the preprocessing, the cached images,
    what is cached (`tag`: the last map, the maps entering tuned stages, a pyramid). The tuned stages' weights are
    not in it: they change in training, the maps entering them do not."""
    digest = hashlib.sha256(json.dumps([asdict(preprocessing), contents, *([tag] if tag else [])]).encode())
    for name, tensor in sorted(frozen.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class FeatureCache:
    """A built feature folder, read-only: `maps[rows]` are float16 N x C x H x W arrays."""

    def __init__(self, folder: Path, layout: FeatureLayout) -> None:
        self.folder, self.layout = folder, layout
        self._maps: np.memmap | None = None  # opened lazily, once per worker process

    @property
    def maps(self) -> np.memmap:
        if self._maps is None:
            self.check()
            self._maps = _open(self.folder, self.layout, "r")
        return self._maps

    def check(self) -> None:
        """A clear error when the maps file was deleted or cut short by another process (reading a memory map past
        the end of its file would kill this one with SIGBUS). Cheap: one stat; the loader calls it per batch."""
        path = self.folder / FEATURES_FILE
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            if self._maps is not None:
                return  # still mapped: the open map keeps the deleted file's data
            raise ArtExtractError(f"{path} was deleted while this run used it; run the command again (the maps "
                                  "are computed again, and `train --resume` goes on exactly)") from None
        needed = self.layout.file_bytes
        if size < needed:
            raise ArtExtractError(f"{path} was cut short ({size:,} of {needed:,} bytes) by another process while "
                                  "this run read it; run the command again (the missing maps are computed again, "
                                  "and `train --resume` goes on exactly)")

    def __getstate__(self) -> dict[str, object]:  # worker processes open their own map
        return {"folder": self.folder, "layout": self.layout, "_maps": None}


def _open(folder: Path, layout: FeatureLayout, mode: str) -> np.memmap:
    return np.memmap(folder / FEATURES_FILE, dtype=np.float16, mode=mode, shape=(layout.count, *layout.shape))


def _read_layout(folder: Path) -> FeatureLayout | None:
    try:
        raw = json.loads((folder / LAYOUT_FILE).read_text())
        known = {f.name for f in dataclasses.fields(FeatureLayout)}
        return FeatureLayout(**{k: v for k, v in raw.items() if k in known} | {"shape": tuple(raw["shape"])})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _current_layout(folder: Path, key: str, count: int) -> FeatureLayout | None:
    """The folder's layout when it is of these maps (same key, same cache rows); None otherwise."""
    layout = _read_layout(folder)
    return layout if layout is not None and layout.key == key and layout.count == count else None


def _folder_and_key(data: DataInfo, backbone: Backbone, backbone_name: str,
                    preprocessing: Preprocessing) -> tuple[Path, str, int]:
    """(feature folder, key, cache rows) of the maps `backbone.frozen_part()` computes on DATA's cache."""
    cache_layout = read_layout(data.folder.cache)
    assert cache_layout is not None, "load_data_folder checked the cache"
    tag = backbone.cache_tag
    key = feature_key(backbone.frozen_part(), preprocessing, cache_contents(data), tag)
    name = f"{backbone_name}-{preprocessing.image_size}px{f'-{tag}' if tag else ''}-{key}"
    return data.folder.features / name, key, cache_layout.count


def find_features(data: DataInfo, backbone: Backbone, backbone_name: str, preprocessing: Preprocessing,
                  rows: np.ndarray) -> FeatureCache | None:
    """The already computed maps of `backbone`'s frozen part when every one of `rows` is there, else None (e.g. the
    backbone was fine-tuned, so its maps are not those cached). Computes nothing, writes nothing."""
    folder, key, count = _folder_and_key(data, backbone, backbone_name, preprocessing)
    layout = _current_layout(folder, key, count)
    if layout is None or not layout.file_whole(folder):
        return None
    return FeatureCache(folder, layout) if _load_done(folder, count)[rows].all() else None


def predict_rows(model: nn.Module, backbone_name: str, preprocessing: Preprocessing, data: DataInfo,
                 cache_rows: np.ndarray, runtime: Runtime, batch_size: int, desc: str) -> dict[str, np.ndarray]:
    """The model's `logits_<task>` and `embedding` for DATA's cache rows (read in file order: sort them first). A
    frozen backbone's maps of these images are in DATA/features/ already (same weights, same key): reading them
    skips the backbone, by far the costliest part of the pass; otherwise the cached images go through it."""
    features = find_features(data, model.backbone, backbone_name, preprocessing, cache_rows)
    if features is not None:
        log.info("%s: reading the backbone's cached maps from %s", desc, features.folder)
        source = features.maps
    else:  # on a CPU the backbone runs faster in small batches (bench/bench_features.py: 57 % of it at 256)
        source = open_cache(data.folder.cache)
        batch_size = backbone_batch_size(batch_size, runtime.device)
    batches = (torch.from_numpy(np.ascontiguousarray(source[cache_rows[i: i + batch_size]]))
               for i in range(0, len(cache_rows), batch_size))
    return run_model(model, batches, len(cache_rows), preprocessing, runtime, desc=desc,
                     from_features=features is not None)


def build_features(data: DataInfo, backbone: Backbone, backbone_name: str, preprocessing: Preprocessing,
                   runtime: Runtime, device: torch.device, batch_size: int) -> FeatureCache:
    """Compute (or finish computing) the maps of every usable cached image; returns the cache to train from."""
    frozen = backbone.frozen_part()
    folder, key, count = _folder_and_key(data, backbone, backbone_name, preprocessing)
    folder.mkdir(parents=True, exist_ok=True)
    with FolderLock(folder) as lock:
        # Two runs starting on one DATA (a job array, say) would otherwise both reset the folder, and one would mark
        # done rows that it wrote into the file the other had just replaced: zeros, trusted ever after. The second
        # waits, then finds the maps computed.
        lock.wait_exclusive("computing the same feature maps")
        clean_temporaries(folder)  # a done-file save that a kill -9 cut short
        layout = _current_layout(folder, key, count)
        if layout is None:
            layout = FeatureLayout(backbone_name, key, count, map_shape(frozen, preprocessing, runtime, device))
            for stale in (folder / FEATURES_FILE, folder / DONE_FILE):
                stale.unlink(missing_ok=True)
            write_json(folder / LAYOUT_FILE, {**asdict(layout), "preprocessing": asdict(preprocessing)})
        done = _load_done(folder, layout.count)
        maps_file = folder / FEATURES_FILE
        if done.any() and not layout.file_whole(folder):
            log.warning("features: %s was deleted or cut short; computing every map again", maps_file)
            done[:] = False
        with open(maps_file, "ab") as handle:  # sparse; rows are filled in place
            if handle.tell() < layout.file_bytes:
                handle.truncate(layout.file_bytes)
        usable = data.manifest.loc[data.manifest["status"] == "ok", "cache_index"].to_numpy(np.int64)
        todo = np.sort(usable[~done[usable]])
        if len(todo):
            log.info("features: %s maps of %d images into %s (%d already there)", backbone_name, len(todo), folder,
                     len(usable) - len(todo))
            _compute(data, frozen, preprocessing, runtime, device, batch_size, folder, layout, done, todo)
    return FeatureCache(folder, layout)


def _load_done(folder: Path, count: int) -> np.ndarray:
    try:
        done = np.load(folder / DONE_FILE, allow_pickle=False)
        if done.shape == (count,) and done.dtype == bool:
            return done
    except (OSError, ValueError):
        pass
    return np.zeros(count, dtype=bool)


def _compute(data: DataInfo, backbone: nn.Module, preprocessing: Preprocessing, runtime: Runtime,
             device: torch.device, batch_size: int, folder: Path, layout: FeatureLayout, done: np.ndarray,
             todo: np.ndarray) -> None:
    images = open_cache(data.folder.cache)
    maps = _open(folder, layout, "r+")
    batch_size = backbone_batch_size(batch_size, device)
    chunks = [todo[i: i + batch_size] for i in range(0, len(todo), batch_size)]

    path = folder / FEATURES_FILE

    def damage() -> str:
        """What another program did to the maps file under the map, if anything: writing past the end of a cut
        file kills this process with SIGBUS, without a word, and rows written into a deleted one are lost."""
        try:
            return "cut short" if path.stat().st_size < layout.file_bytes else ""
        except FileNotFoundError:
            return "deleted"

    def save() -> None:
        if damage():
            return  # nothing to keep: the rows' file is gone (the next run sees that and starts it again)
        maps.flush()
        sync_file(path)  # the rows are on disk before the done record says so
        save_array(folder / DONE_FILE, done)

    batches = (torch.from_numpy(np.ascontiguousarray(images[rows])) for rows in chunks)
    with saving_progress(save) as saver, Progress(len(todo), "features") as progress:
        for rows, out in zip(chunks, forward_batches(backbone, batches, preprocessing, runtime, device), strict=True):
            if what := damage():  # one stat per batch
                raise ArtExtractError(f"{path} was {what} by another program while its maps were computed; run "
                                      "the command again (it computes them again)")
            maps[rows] = out.to(torch.float16).cpu().numpy()
            done[rows] = True
            progress.update(len(rows))
            saver.tick()
