import numpy as np
import torch
import torch.nn.functional as F

from artextract.engine.loss import class_weights, masked_multitask_loss
from artextract.engine.preprocessing import Preprocessing
from artextract.engine.sampler import batch_indices
from artextract.engine.selection import task_metrics


def _plain(cache_size: int, image_size: int) -> Preprocessing:
    """Mean 0 and std 1: the views stay in [0, 1]."""
    return Preprocessing(cache_size, image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def test_batches_are_disjoint_across_ranks_and_fixed_by_epoch():
    per_rank = [np.concatenate(batch_indices(103, 10, epoch=3, seed=1, rank=r, world=2)) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == 50  # 51 per rank, the incomplete tail dropped
    assert not set(per_rank[0]) & set(per_rank[1])
    again = np.concatenate(batch_indices(103, 10, epoch=3, seed=1, rank=0, world=2))
    np.testing.assert_array_equal(per_rank[0], again)
    other_epoch = np.concatenate(batch_indices(103, 10, epoch=4, seed=1, rank=0, world=2))
    assert not np.array_equal(per_rank[0], other_epoch)
    everything = np.concatenate(batch_indices(25, 10, epoch=0, seed=0, drop_last=False))
    assert sorted(everything) == list(range(25))


def test_augment_is_seeded_and_crops_within_the_image():
    batch = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(5)
    first = _plain(32, 24).train_view(batch, generator)
    generator.manual_seed(5)
    second = _plain(32, 24).train_view(batch, generator)
    assert first.shape == (4, 3, 24, 24)
    torch.testing.assert_close(first, second)
    assert first.min() >= 0 and first.max() <= 1  # normalised with mean 0, std 1: still in [0, 1]


def test_crops_keep_the_picture_and_flip_about_half_of_the_time():
    batch = torch.zeros(200, 32, 32, 3, dtype=torch.uint8)
    batch[:, :, :16, 0] = 255  # red left half
    batch[:, :, 16:, 2] = 255  # blue right half
    out = _plain(32, 16).train_view(batch, torch.Generator().manual_seed(0), min_scale=1.0)
    red_left = out[:, 0, :, :4].mean(dim=(1, 2)) > 0.9
    blue_left = out[:, 2, :, :4].mean(dim=(1, 2)) > 0.9
    assert bool((red_left ^ blue_left).all())  # every crop keeps one colour at each side
    assert 70 < int(blue_left.sum()) < 130  # flipped about half of the time
    unflipped = _plain(32, 16).train_view(batch[:20], torch.Generator().manual_seed(0), min_scale=1.0, hflip=False)
    assert bool((unflipped[:, 0, :, :4].mean(dim=(1, 2)) > 0.9).all())


def test_center_view_takes_the_central_part():
    batch = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)
    batch[:, 4:28, 4:28] = 255
    out = _plain(32, 24).eval_view(batch)
    assert out.shape == (1, 3, 24, 24) and out.min() == 1.0
    assert _plain(32, 64).eval_view(batch).shape == (1, 3, 64, 64)
    np.testing.assert_array_equal(_plain(32, 24).visible(batch[0].numpy()), batch[0, 4:28, 4:28].numpy())


def test_masked_loss_ignores_missing_labels_and_matches_cross_entropy():
    torch.manual_seed(0)
    logits = {"artist": torch.randn(4, 3, requires_grad=True), "genre": torch.randn(4, 5, requires_grad=True)}
    labels = torch.tensor([[0, -1], [2, -1], [-1, -1], [1, -1]])
    total, per_task = masked_multitask_loss(logits, labels, ["artist", "genre"])
    expected = F.cross_entropy(logits["artist"][[0, 1, 3]], torch.tensor([0, 2, 1]))
    torch.testing.assert_close(total, expected)
    assert per_task["genre"] == 0
    total.backward()
    assert logits["genre"].grad is not None and logits["genre"].grad.abs().sum() == 0
    assert logits["artist"].grad[2].abs().sum() == 0  # the unlabelled image teaches nothing


def test_class_weights_are_inverse_frequency():
    weights = class_weights(np.array([0, 0, 0, 1, -1]), 3)
    assert weights[2] == 0 and weights[1] == 3 * weights[0]
    torch.testing.assert_close(weights[:2].mean(), torch.tensor(1.0))


def test_task_metrics_skip_unlabelled():
    metrics = task_metrics(np.array([0, 1, -1, 1]), np.array([0, 0, 1, 1]))
    assert metrics["acc"] == 2 / 3


def test_class_weighted_loss_is_pytorchs_weighted_mean():
    torch.manual_seed(1)
    logits = {"style": torch.randn(6, 4)}
    labels = torch.tensor([[0], [1], [1], [3], [-1], [1]])
    weights = {"style": torch.tensor([2.0, 0.5, 1.0, 4.0])}
    for smoothing in (0.0, 0.1):
        total, _ = masked_multitask_loss(logits, labels, ["style"], weights, label_smoothing=smoothing)
        keep = labels[:, 0] >= 0
        expected = F.cross_entropy(logits["style"][keep], labels[keep, 0], weight=weights["style"],
                                   label_smoothing=smoothing)
        torch.testing.assert_close(total, expected)
