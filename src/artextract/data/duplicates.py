"""Content duplicates: one painting filed under two names, as byte-identical files or as copies that were
re-encoded, resized, slightly cropped or photographed again.

Every image's fingerprint is taken while the cache decodes it (data/cache.py): the SHA-256 of its file's bytes, and
two 64-bit perceptual hashes of its cached square (`imagehash`'s DCT hash `phash` and its gradient hash `dhash`,
both on the greyscale image). Two images are the same painting when their bytes are identical, or when **both**
hashes lie within NEAR_BITS bits of each other: one hash alone at that distance also pairs different works of
similar layout (two Rembrandt portraits in a round frame), two independent hashes rarely agree by chance. Groups
are closed under the relation (union-find), so a chain of copies forms one group.

Measured on the 13,493 real WikiArt paintings of the sample (docs/data.md, "Duplicate paintings"): 30
byte-identical pairs, and 89 more pairs within both thresholds, of which 86 were judged by eye the same painting
and 3 different works that share a composition and differ only in colour (one composition in two colourways),
which greyscale hashes cannot tell apart.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from artextract.data.protocol import ImageRecord

NEAR_BITS = 8  # at most this many of 64 bits may differ, in phash and in dhash alike
_HASHED_SIDE = 64
_CHUNK = 512  # rows compared against all others at once (512 x 81,446 pairs: 330 MB of temporaries)


def image_fingerprint(data: bytes, square: np.ndarray) -> tuple[bytes, int, int]:
    """(SHA-256 of the file's bytes, phash, dhash) of one image, the hashes taken of its cached square."""
    import imagehash

    # Both hashes shrink the image to 32 x 32 and 9 x 8 greyscale; shrinking it once to about 64 px first makes
    # them 5x cheaper (bench/bench_duplicates.py) and moves a hash by 0.1 bit on average.
    image = Image.fromarray(square).convert("L")
    image = image.reduce(max(1, min(image.size) // _HASHED_SIDE))
    return (hashlib.sha256(data).digest(), _as_int(imagehash.phash(image).hash),
            _as_int(imagehash.dhash(image).hash))


def _as_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big")


@dataclass
class Groups:
    """Per row, its group (-1: no other copy); per group, "exact" (every copy has the same bytes) or "near"."""

    group: np.ndarray
    kind: list[str]
    near_skipped: bool = False  # the near search was given up (see NEAR_PAIRS_PER_IMAGE)

    @property
    def count(self) -> int:
        return len(self.kind)


# More near pairs than this per distinct image means hashes that say nothing (thousands of blank or placeholder
# images): the near search is then given up, and said so, rather than merging unrelated images by the thousand.
NEAR_PAIRS_PER_IMAGE = 20


class _Forest:
    """Union-find over row numbers; a group's root is its smallest row."""

    def __init__(self, size: int) -> None:
        self.parent = np.arange(size)

    def root(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    def join(self, a: int, b: int) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _join_equal(forest: _Forest, rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Join the rows whose keys are equal; returns the first row of each distinct key."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    for position in np.flatnonzero(first[inverse] != np.arange(len(rows))):
        forest.join(int(rows[first[inverse[position]]]), int(rows[position]))
    return rows[np.sort(first)]


def find_groups(sha256: np.ndarray, phash: np.ndarray, dhash: np.ndarray, usable: np.ndarray) -> Groups:
    """Duplicate groups among the `usable` rows (`sha256`: N x 32 uint8; the hashes: N uint64). Group numbers
    follow the rows' order, so the same inputs always give the same numbers."""
    rows = np.flatnonzero(usable)
    forest = _Forest(len(usable))
    # Identical bytes, then identical hashes, are joined without comparing pairs: a collection of thousands of
    # identical placeholder images costs no more than one.
    _join_equal(forest, rows, np.ascontiguousarray(sha256[rows]).view(np.dtype((np.void, 32))).ravel())
    both = np.stack([phash[rows].astype(np.uint64), dhash[rows].astype(np.uint64)], axis=1)
    distinct = _join_equal(forest, rows, np.ascontiguousarray(both).view(np.dtype((np.void, 16))).ravel())
    pairs = near_pairs(phash[distinct], dhash[distinct], limit=NEAR_PAIRS_PER_IMAGE * max(len(distinct), 1))
    for a, b in pairs if pairs is not None else []:
        forest.join(int(distinct[a]), int(distinct[b]))

    members_of: dict[int, list[int]] = {}
    for i in rows:
        members_of.setdefault(forest.root(int(i)), []).append(int(i))
    group = np.full(len(usable), -1, dtype=np.int64)
    kind: list[str] = []
    for members in sorted((m for m in members_of.values() if len(m) > 1), key=lambda m: m[0]):
        group[members] = len(kind)
        kind.append("exact" if len({bytes(sha256[i]) for i in members}) == 1 else "near")
    return Groups(group, kind, near_skipped=pairs is None)


def near_pairs(phash: np.ndarray, dhash: np.ndarray, bits: int = NEAR_BITS,
               limit: int | None = None) -> list[tuple[int, int]] | None:
    """Index pairs (a < b) whose phash and dhash both differ in at most `bits` bits: every pair compared (exact,
    no index to miss one), in chunks on every core (numpy's bit counting releases the GIL). None when more than
    `limit` pairs are found: the hashes then group what is not copies (memory stays bounded either way)."""
    phash, dhash = phash.astype(np.uint64), dhash.astype(np.uint64)

    def chunk(start: int) -> tuple[np.ndarray, np.ndarray] | None:
        close = np.bitwise_count(phash[start: start + _CHUNK, None] ^ phash[None, start:]) <= bits
        if limit is not None and np.count_nonzero(close) > limit + _CHUNK:  # (the diagonal counts too)
            return None
        a, b = np.nonzero(close)
        a, b = a + start, b + start
        keep = (b > a) & (np.bitwise_count(dhash[a] ^ dhash[b]) <= bits)
        return a[keep], b[keep]

    found: list[tuple[int, int]] = []
    with ThreadPoolExecutor(max(1, min(os.cpu_count() or 1, 8))) as pool:
        for part in pool.map(chunk, range(0, len(phash), _CHUNK)):
            if part is None or (limit is not None and len(found) + len(part[0]) > limit):
                return None
            found += zip(part[0].tolist(), part[1].tolist(), strict=True)
    return found


def merge_duplicates(records: list[ImageRecord], groups: Groups) -> list[dict[str, Any]]:
    """Keep one copy of each duplicate group and mark the others (`duplicate_of`); returns one entry per group for
    the report and DATA/duplicates.csv. `records` are in the rows' order of `groups`.

    The kept copy is an evaluation image when the group has one (a painting in val and in train is a val painting:
    its training copies are left out, so nothing trained on is scored), else the first by path. It carries the
    labels its kind of copies agree on (evaluation copies, or training copies); where they disagree for a task,
    the painting is left unlabelled for that task, as for a path listed twice with different labels: one painting
    with a set of labels is not trained on nor scored for that task until a reviewed override (prepare
    --overrides) settles which label stands. Its other tasks train as usual."""
    entries = []
    for number in range(groups.count):
        members = [records[i] for i in np.flatnonzero(groups.group == number)]
        kept = ([m for m in members if m.split == "eval"] or members)[0]
        alike = [m for m in members if m.split == kept.split]
        others = [m for m in members if m.split != kept.split]  # training copies of an evaluation painting
        copies = [{"path": m.path, "official": m.split, "labels": dict(m.labels)} for m in members]
        given = dict(kept.labels)
        conflicting = []
        for task in kept.labels:
            labels = sorted({m.labels[task] for m in alike if m.labels[task] >= 0})
            if len(labels) > 1:
                conflicting.append(task)
            kept.labels[task] = labels[0] if len(labels) == 1 else -1
        for member in members:
            member.group = number
            member.duplicate_of = "" if member is kept else kept.path
        entries.append({
            "group": number, "kind": groups.kind[number], "kept": kept.path, "copies": copies,
            "conflicting_tasks": conflicting,
            "left_out_for_evaluation": [m.path for m in others],
            # WikiArt files a painting of two styles under both folders: a val painting whose training copy says
            # another style is as much a multi-label painting as a labelling error
            "other_labels_in_train": sorted({t for m in others for t, label in m.labels.items()
                                             if label >= 0 and label != given[t]}),
        })
    return entries
