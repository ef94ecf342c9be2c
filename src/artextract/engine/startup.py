"""The start-up summary of a training run, and the warnings about settings that quietly defeat the model."""

from __future__ import annotations

from artextract.engine.inference import map_shape
from artextract.engine.session import Session
from artextract.models.readers import describe_reader, reader_kind
from artextract.models.weights import weights_phrase


def describe(session: Session) -> list[str]:
    """The start-up summary: what is trained, on what, how; plus warnings about settings that defeat the model."""
    config, fabric, model = session.config, session.fabric, session.raw_model
    m, t = config.model, config.train
    total = sum(p.numel() for p in model.parameters())
    trained = model.trained_parameter_count(backbone_frozen=t.freeze_backbone)
    reader = describe_reader(m)
    frozen_plan = (f"backbone frozen but its last {m.tuned_stages} stages: they, the reader and the heads train "
                   "from the maps entering them in DATA/features/" if m.tuned_stages else
                   "backbone frozen: reader and heads train from DATA/features/")
    plan = (frozen_plan if t.freeze_backbone else
            f"{t.frozen_epochs} frozen epochs from DATA/features/, then fine-tuning" if t.frozen_epochs else
            "whole network trained from the images")
    lines = [f"model: {m.backbone} ({weights_phrase(m.weights)}) + {reader}; tasks {', '.join(m.tasks)}; "
             f"{total:,} parameters ({trained:,} trained); {plan}",
             f"device: {fabric.device} x {fabric.world_size}, precision {session.runtime.precision}, "
             f"channels_last {session.runtime.channels_last}",
             f"images: {len(session.train_set):,} train / {len(session.select_set):,} select; "
             f"{len(session.sampler)} steps of {t.batch_size} per epoch; {t.image_size} px input from a "
             f"{session.preprocessing.cache_size} px cache, normalised with mean "
             f"{_rounded(session.preprocessing.mean)} and std {_rounded(session.preprocessing.std)} (the weights' own)"]
    return lines


def _rounded(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


def warnings_for(session: Session) -> list[str]:
    """Settings that quietly defeat the model: upsampled crops, a feature grid too small to read as a sequence."""
    found = []
    cache, size = session.preprocessing.cache_size, session.preprocessing.image_size
    if size > cache:
        found.append(f"the {size} px model input is upsampled from a {cache} px cache: prepare with --cache-size "
                     f"{round(size * 8 / 7)} for sharp crops")
    grid = (session.features.layout.shape[1:] if session.features is not None and not session.config.model.tuned_stages
            else _grid(session))
    # The pyramid's reader reads the stages as its sequence, not the positions of a map.
    reads_positions = session.config.model.representation != "pyramid"
    if reads_positions and reader_kind(session.config.model.reader).sequential and grid[0] * grid[1] < 16:
        found.append(f"the backbone leaves a {grid[0]}x{grid[1]} feature grid at {size} px: the recurrent reader "
                     f"reads a sequence of only {grid[0] * grid[1]} positions; use a larger --image-size")
    return found


def _grid(session: Session) -> tuple[int, int]:
    _, height, width = map_shape(session.raw_model.backbone, session.preprocessing, session.runtime,
                                 session.fabric.device)
    return height, width
