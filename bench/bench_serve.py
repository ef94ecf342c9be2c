"""`artextract serve` under load on the loopback: concurrent clients mixing grid pages, thumbnails, painting pages
and uploads, against the same pages fetched one at a time in the same run.

- reference: each kind of request sent alone, one after the other (median latency);
- load: `--requests` requests from `--clients` concurrent clients, in a shuffled mix (40 % grid pages with
  random filters and pages, 30 % thumbnails, 20 % painting pages, 10 % uploads of a generated painting).
Prints p50 / p95 latency per kind, the error count and the server process's resident memory before and after.

Usage: python bench/bench_serve.py --run RUN [--data DATA] [--requests 200] [--clients 20]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx
import numpy as np
import uvicorn
from PIL import Image

from artextract.serve.app import create_app
from artextract.serve.collection import Collection


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _upload() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()

    collection = Collection.open(args.run, args.data)
    collection.index  # noqa: B018 (built before timing)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(collection), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(0)
    rows = len(collection.predictions)
    upload = _upload()
    classes = {t: collection.classes[t] for t in collection.tasks}

    def request(kind: str, client: httpx.Client) -> tuple[str, float, bool]:
        start = time.perf_counter()
        if kind == "grid":
            task = rng.choice(collection.tasks)
            params = {"task": task, "page": rng.choice([1, 1, 2]), "sort": rng.choice(["outlier", "confidence"])}
            if rng.random() < 0.5:
                params["true"] = rng.choice(classes[task])
            response = client.get(base + "/", params=params)
        elif kind == "thumbnail":
            response = client.get(f"{base}/thumb/{rng.randrange(rows)}.jpg")
        elif kind == "painting":
            response = client.get(f"{base}/painting/{rng.randrange(rows)}")
        else:
            response = client.post(base + "/new", files={"image": ("p.jpg", upload, "image/jpeg")})
        return kind, time.perf_counter() - start, response.status_code == 200

    memory_before = _rss_mb()
    with httpx.Client(timeout=120) as client:
        alone = {kind: [request(kind, client)[1] for _ in range(3)] for kind in ("grid", "thumbnail", "painting",
                                                                                  "upload")}
    mix = ["grid"] * 40 + ["thumbnail"] * 30 + ["painting"] * 20 + ["upload"] * 10
    kinds = [mix[i % len(mix)] for i in range(args.requests)]
    rng.shuffle(kinds)
    clients = [httpx.Client(timeout=120) for _ in range(args.clients)]
    memory_after = []
    for _ in range(2):  # a second round shows whether memory keeps growing
        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(lambda item: request(item[1], clients[item[0] % args.clients]),
                                    enumerate(kinds)))
        wall = time.perf_counter() - start
        memory_after.append(_rss_mb())
    for client in clients:
        client.close()
    server.should_exit = True

    errors = sum(not ok for _, _, ok in results)
    print(f"{rows:,} paintings; {args.requests} requests from {args.clients} clients in {wall:.1f} s (second round) "
          f"({args.requests / wall:.1f} requests/s); errors: {errors}")
    print(f"resident memory of the process (server and clients; mapped DATA pages count): {memory_before:.0f} MB "
          f"before, {memory_after[0]:.0f} MB after the first round, {memory_after[1]:.0f} MB after the second")
    print(f"{'kind':<10} {'alone p50':>10} {'load p50':>10} {'load p95':>10} {'p95 / alone':>12}")
    for kind in ("grid", "thumbnail", "painting", "upload"):
        times = np.array([t for k, t, _ in results if k == kind])
        solo = float(np.median(alone[kind]))
        print(f"{kind:<10} {solo * 1e3:>8.0f}ms {np.median(times) * 1e3:>8.0f}ms "
              f"{np.percentile(times, 95) * 1e3:>8.0f}ms {np.percentile(times, 95) / solo:>11.1f}x")
    every = np.array([t for _, t, _ in results])
    print(f"all        p50 {np.median(every) * 1e3:.0f} ms, p95 {np.percentile(every, 95) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
