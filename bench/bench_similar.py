"""Similarity search over a WikiArt-sized index against a plain full sort, in the same run.

- reference: each query's cosines with every row (the float16 rows converted per query, as a memory-mapped index
  read naively would be) and a full argsort;
- ArtExtract: `SimilarityIndex.search` (rows held as float32, one matrix product, a partial sort of the top k);
- the index build (unit rows to float16, written beside the evaluation) once.

Usage: python bench/bench_similar.py [--rows 81446] [--width 512] [--queries 200] [--k 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from artextract.analysis.similarity import unit_rows
from artextract.similar import SimilarityIndex, _write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=81_446)  # every painting of the ArtGAN CSVs
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=8)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(args.rows, args.width)).astype(np.float32)
    rows = pd.DataFrame({"path": [f"p{i}.jpg" for i in range(args.rows)], "split": "train",
                         "cache_index": np.arange(args.rows), "label_style": "s", "pred_style": "s"})
    queries = rng.normal(size=(args.queries, args.width)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        unit16 = unit_rows(embeddings).astype(np.float16)
        _write(Path(tmp) / "index", rows, unit16)
        built = time.perf_counter() - start
        mapped = np.memmap(Path(tmp) / "index" / "vectors.f16", dtype=np.float16, mode="r",
                           shape=(args.rows, args.width))
        start = time.perf_counter()
        index = SimilarityIndex(Path(tmp) / "index", rows, mapped)
        loaded = time.perf_counter() - start

        reference, expected = [], []
        for query in unit_rows(queries[:20]):
            start = time.perf_counter()
            expected.append([f"p{i}.jpg" for i in np.argsort(-(np.asarray(mapped, dtype=np.float32) @ query))[:args.k]])
            reference.append(time.perf_counter() - start)
        ours, answers = [], []
        for query in queries:
            start = time.perf_counter()
            answers.append([n.path for n in index.search(query[None], args.k)[0]])
            ours.append(time.perf_counter() - start)
        assert answers[:20] == expected, "the search disagrees with the full sort"

    ref_ms, our_ms = np.median(reference) * 1e3, np.median(ours) * 1e3
    print(f"index of {args.rows:,} x {args.width} (float16, {args.rows * args.width * 2 / 2**20:.0f} MB): built in "
          f"{built:.2f} s, opened (float32 in memory) in {loaded:.2f} s")
    print(f"reference (float16 rows converted per query, full argsort): median {ref_ms:.1f} ms per query")
    print(f"ArtExtract search, k={args.k}: median {our_ms:.1f} ms, p95 {np.percentile(ours, 95) * 1e3:.1f} ms per "
          f"query; {ref_ms / our_ms:.1f}x the reference")


if __name__ == "__main__":
    main()
