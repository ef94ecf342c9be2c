"""Which score tells what a model does not know? Three scores on the same paintings and on images that are no
paintings at all, with thresholds fitted on the selection split only.

- `top probability`: the calibrated maximum class probability, the score the model file's open-set flag uses;
- `energy`: the temperature-scaled log-sum-exp of the logits (Liu et al., 2020);
- `nearest painting`: the cosine similarity of the image's embedding to the nearest training painting's (the
  similarity index's vectors; a k-nearest-neighbour score after Sun et al., 2022).

Each is thresholded where 95 % of the selection paintings pass (as `train` sets the top probability's), then
applied to the run's evaluated split (a test split carved by `prepare --test-fraction`: the paintings of known
classes, and for artists the works of other painters) and to generated non-paintings (uniform noise, colour
gradients) and crops of scikit-learn's two sample photographs. Usage:

    python bench/probe_open_set.py RUN [--task artist]

RUN must be evaluated on a DATA folder with a test split (its predictions.parquet then holds the test and selection
paintings). Prints a markdown table: the share flagged in each group with its exact 95 % interval, and the AUROC
of each score at telling the known paintings from each other group.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from scipy.special import logsumexp
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from artextract.analysis.probabilities import softmax
from artextract.analysis.similarity import unit_rows
from artextract.engine.provenance import scored_data
from artextract.engine.selection import OPEN_SET_ACCEPT
from artextract.layout import EvalFolder, RunFolder
from artextract.predictor import load_model
from artextract.similar import open_index

SCORES = ("top probability", "energy", "nearest painting")


def familiarity(logits: np.ndarray, embeddings: np.ndarray, training: np.ndarray, temperature: float,
                ) -> dict[str, np.ndarray]:
    """Each score per image, higher = more like what the model was trained on."""
    nearest = np.concatenate([(unit_rows(chunk) @ training.T).max(axis=1)
                              for chunk in np.array_split(embeddings, max(1, len(embeddings) // 512))])
    return {"top probability": softmax(logits, temperature).max(axis=1),
            "energy": temperature * logsumexp(logits / temperature, axis=1), "nearest painting": nearest}


def non_paintings(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """uint8 squares of images that are not paintings: noise, gradients, photographs."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (40, size, size, 3), dtype=np.uint8)
    ramp = np.linspace(0, 1, size)[None, :, None]
    gradients = []
    for _ in range(40):
        start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        image = start + (end - start) * ramp
        image = np.broadcast_to(image, (size, size, 3))
        gradients.append(np.ascontiguousarray(np.rot90(image, rng.integers(4))).astype(np.uint8))
    photos = []
    for photo in load_sample_images().images:  # china.jpg and flower.jpg, 427 x 640
        for _ in range(20):
            side = int(rng.integers(160, 420))
            top, left = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
            photos.append(photo[top:top + side, left:left + side])
    return {"noise": noise, "gradients": np.stack(gradients), "photographs": photos}


def _rate(flagged: np.ndarray) -> str:
    k, n = int(flagged.sum()), len(flagged)
    interval = binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{100 * k / n:.1f} % [{100 * interval.low:.1f}, {100 * interval.high:.1f}] ({k}/{n})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--task", default="artist")
    args = parser.parse_args()
    run, task = RunFolder(args.run), args.task
    predictor = load_model(run.model, "cpu")
    temperature = predictor.info.temperature[task]
    predictions, _ = EvalFolder(run.default_eval).read_predictions()
    data = scored_data(EvalFolder(run.default_eval)).folder.root  # the DATA folder the evaluation scored
    index = open_index(data, run.model)  # every usable painting of DATA: its training split is the reference
    training = index.vectors[(index.rows["split"] == "train").to_numpy()]

    def scored(frame):
        return familiarity(np.stack(frame[f"logits_{task}"].to_numpy()), np.stack(frame["embedding"].to_numpy()),
                           training, temperature)

    selection = predictions[predictions["split"] == "select"]
    selection = selection[selection[f"label_{task}"] >= 0]
    thresholds = {name: float(np.quantile(values, 1 - OPEN_SET_ACCEPT)) for name, values in scored(selection).items()}
    tested = predictions[predictions["split"] == "eval"]
    known = tested[f"label_{task}"].to_numpy() >= 0
    groups = {"known classes": scored(tested[known])}
    if (~known).any():
        groups["outside the classes"] = scored(tested[~known])
    for name, images in non_paintings(predictor.preprocessing.cache_size).items():
        squares = np.stack([predictor.preprocessing.decode(image)[0] for image in images])
        logits, embeddings = predictor.outputs(squares)
        groups[name] = familiarity(logits[task], embeddings, training, temperature)

    print(f"Task {task}; thresholds fitted on {len(selection)} selection paintings (95 % pass); {len(training)} "
          f"training paintings as the reference.\n")
    print("| score | " + " | ".join(f"{group} ({len(values['energy'])})" for group, values in groups.items())
          + " | AUROC: known vs " + " / ".join(list(groups)[1:]) + " |")
    print("|---" * (len(groups) + 2) + "|")
    for score in SCORES:
        cells = [_rate(values[score] < thresholds[score]) for values in groups.values()]
        reference = groups["known classes"][score]
        aurocs = [roc_auc_score(np.r_[np.ones(len(reference)), np.zeros(len(values[score]))],
                                np.r_[reference, values[score]]) for values in list(groups.values())[1:]]
        print(f"| {score} | " + " | ".join(cells) + " | " + " / ".join(f"{a:.3f}" for a in aurocs) + " |")


if __name__ == "__main__":
    main()
