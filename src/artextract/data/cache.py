"""The image cache: every image decoded once into a `N x S x S x 3` uint8 array file that training memory-maps.

Files in `DATA/cache/`:
- `layout.json`: image size, row count, the pixel and file-size limits, and a fingerprint of all of these and the
  ordered image list (the limits decide which rows are skipped, so rows decided under other limits are not reused);
- `images.u8`: the raw array (row i is manifest row i), created sparse and filled in any order;
- `status-<key>-<i>of<n>.npy` / `errors-<key>-<i>of<n>.json`: per shard, which rows are done (size, bytes) or
  skipped (why), the identity of the source file each was decided from (size, modification time and inode of a
  file; CRC-32 and size of a zip member) and a digest of the pixels written. `<key>` starts the layout's
  fingerprint, so a status file written under another image size or image list (by a killed run, or a run that
  went on after another reset the cache) is never trusted.
A rerun reads the status files of its layout and decodes what is still pending **and every row whose source file
changed since** (a replaced painting, a re-downloaded file that was skipped as damaged); `rebuild` (prepare
--force) decodes everything again. `--shard i/n` builds rows i, i+n, ... so that several machines sharing a file
system can each build a part. The pixel digests of all rows, in the manifest, key what is computed from the cache
(`contents_digest`: the feature maps, a run's data key), so a changed painting is never served from stale maps.

Concurrency: the DATA folder's lock (core/lock.py) is taken exclusively to check the layout or reset the cache, then
shared while decoding, so the shards of one layout build side by side while a run of another layout, or a second
run of the same shard, is refused at once. `train` and `evaluate` share it too: the cache is never reset under them.

Why raw arrays rather than small JPEGs: reading a row is a memory copy, with no decoding on the training side
(`bench/bench_cache.py` measures both).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from artextract.core.atomic import write_json
from artextract.core.lock import FolderLock
from artextract.core.outdir import clean_temporaries, require_free_space
from artextract.core.processes import become_worker
from artextract.core.progress import Progress, log
from artextract.core.row_store import save_array, saving_progress, sync_file
from artextract.data.cache_files import (
    IMAGES_FILE,
    LAYOUT_FILE,
    CacheLayout,
    fingerprint,
    images_complete,
    open_images,
    pixels_digest,
    read_layout,
)
from artextract.data.decode import SkipImage, decode_square
from artextract.data.duplicates import image_fingerprint
from artextract.data.image_source import ImageSource, UnreadableFile

PENDING, OK, SKIPPED = 0, 1, 2
# `sha256`, `phash` and `dhash`: the image's fingerprint, which finds duplicate paintings (data/duplicates.py).
STATUS_DTYPE = np.dtype([("state", "u1"), ("width", "<i4"), ("height", "<i4"), ("bytes", "<i8"),
                         ("source", "<u8"), ("pixels", "<u8"), ("sha256", "u1", (32,)), ("phash", "<u8"),
                         ("dhash", "<u8")])
_UNHASHED = (bytes(32), 0, 0)


def _status_name(layout: CacheLayout, shard: tuple[int, int]) -> str:
    return f"{layout.fingerprint[:16]}-{shard[0]}of{shard[1]}"


def load_status(cache_dir: Path, layout: CacheLayout) -> tuple[np.ndarray, dict[int, str]]:
    """Merged status of the shards of `layout`: a STATUS_DTYPE array of N rows, and the skip reason per skipped
    row. Status files of other layouts are ignored."""
    merged = np.zeros(layout.count, dtype=STATUS_DTYPE)
    errors: dict[int, str] = {}
    for path in sorted(cache_dir.glob(f"status-{layout.fingerprint[:16]}-*.npy")):
        try:
            part = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            log.warning("ignoring unreadable cache status file %s", path)
            continue
        if part.dtype != STATUS_DTYPE or part.shape != merged.shape:
            log.warning("ignoring cache status file %s of another layout or an older ArtExtract (its rows are "
                        "decoded again)", path)
            continue
        done = part["state"] != PENDING
        merged[done] = part[done]
        errors_path = path.with_name(path.name.replace("status-", "errors-").replace(".npy", ".json"))
        if errors_path.exists():
            errors.update({int(k): v for k, v in json.loads(errors_path.read_text()).items()})
    # A reason recorded before the row was decoded again (its file replaced) no longer applies.
    return merged, {row: why for row, why in errors.items() if merged["state"][row] == SKIPPED}


def _reset(cache_dir: Path, layout: CacheLayout) -> None:
    """Start a cache for `layout`, removing one built for other inputs."""
    for stale in [*cache_dir.glob("status-*.npy"), *cache_dir.glob("errors-*.json"), *cache_dir.glob(".shard-*.lock"),
                  cache_dir / IMAGES_FILE]:
        stale.unlink(missing_ok=True)
    write_json(cache_dir / LAYOUT_FILE, asdict(layout))


# ------------------------------------------------------------------ worker side

_worker: dict[str, object] = {}


def _init_worker(source: ImageSource, cache_dir: Path, layout: CacheLayout, max_pixels: int,
                 in_pool: bool = False) -> None:
    if in_pool:
        become_worker()
    _worker.update(source=source, images=open_images(cache_dir, layout, "r+"), size=layout.image_size,
                   max_pixels=max_pixels)


Built = tuple[int, int, int, int, int, int, tuple[bytes, int, int], str]


def _build_one(job: tuple[int, str]) -> Built:
    """Decode one image into its row; returns (row, state, width, height, bytes, pixel digest, fingerprint,
    reason)."""
    row, member = job
    source: ImageSource = _worker["source"]  # type: ignore[assignment]
    try:
        data = source.read(member)
    except UnreadableFile as err:
        return row, SKIPPED, 0, 0, 0, 0, _UNHASHED, str(err)
    except (OSError, KeyError) as err:
        return row, SKIPPED, 0, 0, 0, 0, _UNHASHED, f"cannot read the file ({err})"
    try:
        array, width, height = decode_square(data, _worker["size"], _worker["max_pixels"])  # type: ignore[arg-type]
    except SkipImage as err:
        return row, SKIPPED, 0, 0, len(data), 0, _UNHASHED, str(err)
    _worker["images"][row] = array  # type: ignore[index]
    return row, OK, width, height, len(data), pixels_digest(array), image_fingerprint(data, array), ""


# ------------------------------------------------------------------ driver


@dataclass
class CacheResult:
    layout: CacheLayout
    status: np.ndarray  # merged STATUS_DTYPE, all shards
    errors: dict[int, str]
    built_now: int
    reused: int


def build_cache(source: ImageSource, members: Sequence[str], paths: Sequence[str], cache_dir: Path,
                image_size: int, max_pixels: int, workers: int = 0,
                shard: tuple[int, int] = (0, 1), lock: FolderLock | None = None, rebuild: bool = False) -> CacheResult:
    """Decode the pending images of this shard into the cache; resumes whatever an earlier run left.

    `members` are the names to read from the source, `paths` the manifest paths (the fingerprint uses these,
    so a folder and its zip share one cache). `lock` is the DATA folder's lock, open and not yet taken; it is
    left shared, for the caller to release once the rest of DATA is written. `rebuild`: decode every row again.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    max_file_bytes = source.max_bytes
    layout = CacheLayout(image_size, len(paths), fingerprint(paths, image_size, max_pixels, max_file_bytes),
                         max_pixels=max_pixels, max_file_bytes=max_file_bytes)
    if lock is None or lock.try_exclusive():
        _check_or_reset(cache_dir, layout)
        if rebuild:
            log.info("cache: rebuilding every row (--force)")
            _reset(cache_dir, layout)
            _check_or_reset(cache_dir, layout)
    elif rebuild:
        raise lock.busy(", so its cache cannot be rebuilt now")
    if lock is not None:
        lock.shared()  # let the other shards of this layout in (turning exclusive to shared is not atomic: recheck)
        if read_layout(cache_dir) != layout or _needs_reset(cache_dir, layout):
            # Someone else holds DATA (another prepare, or a train reading it) and its cache is of another layout.
            other = read_layout(cache_dir)
            built_for = f" for {other.describe(layout)}" if other else ""
            raise lock.busy(f", and its cache is built{built_for}, not {layout.describe(other)}")
    with FolderLock(cache_dir, f".shard-{_status_name(layout, shard)}.lock") as shard_lock:
        # The same shard twice would decode everything twice.
        shard_lock.exclusive(f", building shard {shard[0]}/{shard[1]} of the same cache")
        return _build_shard(source, members, cache_dir, layout, max_pixels, workers, shard)


def _needs_reset(cache_dir: Path, layout: CacheLayout) -> bool:
    # Rows marked done but no file to hold them: it was deleted or cut short. (A missing file with nothing done
    # yet is just another shard starting; resetting then would wipe that shard's status.)
    return not images_complete(cache_dir, layout) and bool(load_status(cache_dir, layout)[0]["state"].any())


def _check_or_reset(cache_dir: Path, layout: CacheLayout) -> None:
    """With DATA held exclusively: start the cache afresh when it was built for other inputs, or lost its images."""
    clean_temporaries(cache_dir.parent)  # DATA and cache/: status or manifest writes that a kill cut short
    if read_layout(cache_dir) != layout:
        if (cache_dir / LAYOUT_FILE).exists():
            log.info("cache: the images, image size or pixel/file limits changed since the last run; rebuilding "
                     "the cache")
        _reset(cache_dir, layout)
    elif _needs_reset(cache_dir, layout):
        log.info("cache: %s is missing or truncated; rebuilding the cache", cache_dir / IMAGES_FILE)
        _reset(cache_dir, layout)
    else:  # status files of another layout (left by a killed run, or by an older ArtExtract) only mislead
        key = layout.fingerprint[:16]
        for pattern in ("status-*.npy", "errors-*.json", ".shard-*.lock"):
            for stale in cache_dir.glob(pattern):
                if f"-{key}-" not in stale.name:
                    stale.unlink(missing_ok=True)
    with open(cache_dir / IMAGES_FILE, "ab") as handle:  # sparse; never shrinks rows another shard wrote
        if handle.tell() < layout.count * layout.row_bytes:
            handle.truncate(layout.count * layout.row_bytes)


def _build_shard(source: ImageSource, members: Sequence[str], cache_dir: Path, layout: CacheLayout,
                 max_pixels: int, workers: int, shard: tuple[int, int]) -> CacheResult:
    images_file = cache_dir / IMAGES_FILE

    merged, _ = load_status(cache_dir, layout)
    index, count = shard
    rows = range(index, layout.count, count)
    sources = {row: source.identity(members[row]) for row in rows}
    changed = [row for row in rows if merged["state"][row] != PENDING and merged["source"][row] != sources[row]]
    if changed:
        log.info("cache: %d images changed since they were cached or skipped (e.g. %s); decoding them again",
                 len(changed), members[changed[0]])
        merged["state"][changed] = PENDING
    todo = [(row, members[row]) for row in rows if merged["state"][row] == PENDING]
    reused = len(rows) - len(todo)
    if reused:
        log.info("cache: %d of %d images of this shard already cached; decoding the other %d", reused, len(rows),
                 len(todo))
    if todo:  # writing through a memory map into a full disk would kill the process (SIGBUS), so check first
        unallocated = layout.count * layout.row_bytes - os.stat(images_file).st_blocks * 512
        require_free_space(cache_dir, min(len(todo) * layout.row_bytes, max(unallocated, 0)), "the image cache")
    own_status_path = cache_dir / f"status-{_status_name(layout, shard)}.npy"
    own_errors_path = cache_dir / f"errors-{_status_name(layout, shard)}.json"
    own = merged.copy()
    own_errors: dict[int, str] = {}
    if own_errors_path.exists():
        own_errors = {int(k): v for k, v in json.loads(own_errors_path.read_text()).items()}

    def save() -> None:
        sync_file(images_file)  # the rows the workers wrote are on disk before the status says they are done
        save_array(own_status_path, own)
        write_json(own_errors_path, {str(k): v for k, v in sorted(own_errors.items())})

    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    with saving_progress(save) as saver, Progress(len(todo), f"cache ({workers} workers)") as progress:
        if workers == 1:
            _init_worker(source, cache_dir, layout, max_pixels)
            results = map(_build_one, todo)
            pool = None
        else:
            pool = ProcessPoolExecutor(workers, initializer=_init_worker,
                                       initargs=(source, cache_dir, layout, max_pixels, True))
            results = pool.map(_build_one, todo, chunksize=32)
        try:
            for row, state, width, height, nbytes, pixels, (sha256, phash, dhash), reason in results:
                own[row] = (state, width, height, nbytes, sources[row], pixels, np.frombuffer(sha256, np.uint8),
                            phash, dhash)
                own_errors.pop(row, None)  # a row decided again keeps only its new reason
                if reason:
                    own_errors[row] = reason
                progress.update()
                saver.tick()
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            _worker.clear()
    merged, errors = load_status(cache_dir, layout)
    return CacheResult(layout, merged, errors, built_now=len(todo), reused=reused)
