"""Exact cosine nearest neighbours over the model's pooled embeddings: the one implementation behind the outlier
scores' neighbours, `artextract similar` and the explorer.

Exact search is a matrix product: at 81,446 x 512 float16 rows that is about 40 M multiply-adds per query, a few
milliseconds on two cores (bench/bench_similar.py), so no approximate index is needed at WikiArt's size.
"""

from __future__ import annotations

import numpy as np

# Queries and pool rows compared at once: the similarity block is at most 2,048 x 32,768 float32 (256 MB).
QUERY_CHUNK = 2_048
POOL_CHUNK = 32_768


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float32), so that a dot product is the cosine similarity; a zero row stays zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def nearest(queries: np.ndarray, pool: np.ndarray, k: int, skip: np.ndarray | None = None,
            ) -> tuple[np.ndarray, np.ndarray]:
    """(indices, similarities), each Q x min(k, usable pool rows), most similar first, of unit `queries` among unit
    `pool` rows (float16 or float32, e.g. a memory map). `skip[q]` is a pool row query q must not get (itself), or
    -1. Ties go to the lower row, so results do not depend on the chunking."""
    queries = np.asarray(queries, dtype=np.float32)
    k = max(0, min(k, len(pool) - (1 if skip is not None else 0)))
    parts = [_nearest_chunk(queries[start:start + QUERY_CHUNK], pool, k,
                            None if skip is None else skip[start:start + QUERY_CHUNK])
             for start in range(0, len(queries), QUERY_CHUNK)]
    if not parts:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    return np.concatenate([i for i, _ in parts]), np.concatenate([s for _, s in parts])


def _nearest_chunk(queries: np.ndarray, pool: np.ndarray, k: int, skip: np.ndarray | None,
                   ) -> tuple[np.ndarray, np.ndarray]:
    n = len(pool)
    best_index = np.zeros((len(queries), 0), dtype=np.int64)
    best_score = np.zeros((len(queries), 0), dtype=np.float32)
    if k == 0 or len(queries) == 0:
        return best_index, best_score
    for start in range(0, n, POOL_CHUNK):
        block = np.asarray(pool[start:start + POOL_CHUNK], dtype=np.float32)
        scores = queries @ block.T
        if skip is not None:
            rows = np.flatnonzero((skip >= start) & (skip < start + len(block)))
            scores[rows, skip[rows] - start] = -np.inf
        take = min(k, scores.shape[1])
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < scores.shape[1] else \
            np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
        best_index = np.concatenate([best_index, top + start], axis=1)
        best_score = np.concatenate([best_score, np.take_along_axis(scores, top, axis=1)], axis=1)
        # Keep the k best so far: highest similarity, then lowest row.
        order = np.lexsort((best_index, -best_score), axis=1)[:, :k]
        best_index = np.take_along_axis(best_index, order, axis=1)
        best_score = np.take_along_axis(best_score, order, axis=1)
    return best_index, best_score
