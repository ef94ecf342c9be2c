"""Which model and which DATA folder an evaluation was made from, by content: the model file's SHA-256 and the DATA
folder's key (its cached pixels, classes, labels and splits), both recorded in EVAL/inputs.json by `evaluate`.

Paths are recorded too, but only as a hint of where to look: a file that moved, a folder copied under another
name or another DATA folder given with --data are recognised (or refused) by what they hold. Anything that shows
an evaluation's rows (the explorer, a similarity search) must read them with this model and this DATA: a row's
cache index means nothing in another folder's cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artextract.core.records import file_digest, read_record
from artextract.errors import ArtExtractError
from artextract.layout import REWRITE_HINT, EvalFolder

_UNKNOWN = "rerun `artextract evaluate` to record it"


def evaluation_inputs(folder: EvalFolder) -> dict[str, Any]:
    """inputs.json of an evaluation; refused when missing (what made the evaluation cannot be told)."""
    if not folder.inputs.is_file():
        raise ArtExtractError(f"cannot tell which model and DATA made {folder.root} ({folder.inputs.name} is "
                              f"missing): {_UNKNOWN}")
    return read_record(folder.inputs, REWRITE_HINT)


def recorded_model_digest(folder: EvalFolder) -> str:
    """The SHA-256 of the model file that made the evaluation: recorded, or (evaluations written before it was)
    read from the recorded file while it is still there."""
    inputs = evaluation_inputs(folder)
    digest = inputs.get("model_sha256")
    if isinstance(digest, str) and digest:
        return digest
    recorded = Path(str(inputs.get("model", "")))
    if inputs.get("model") and recorded.is_file():
        return file_digest(recorded)
    raise ArtExtractError(f"cannot tell which model made {folder.root} ({folder.inputs.name} records no digest and "
                          f"the model file it names is gone): {_UNKNOWN}")


def require_same_model(folder: EvalFolder, model_file: Path, model_digest: str) -> None:
    """Refuse an evaluation made with another model: embeddings of two models live in different spaces (their
    width may well be the same)."""
    if recorded_model_digest(folder) != model_digest:
        recorded = evaluation_inputs(folder).get("model", "another file")
        raise ArtExtractError(f"{folder.root} was evaluated with another model ({recorded}), whose embeddings cannot "
                              f"be compared with {model_file}'s: pass an EVAL folder of this model, or its DATA folder")


def scored_data(folder: EvalFolder, given: Path | None = None) -> Any:
    """The DATA folder (engine.data.DataInfo) the evaluation scored: `given` if it holds the same collection,
    else the recorded folder; refused in one line when neither does."""
    from artextract.engine.data import data_key, load_data_folder

    inputs = evaluation_inputs(folder)
    recorded = Path(str(inputs["data"])) if inputs.get("data") else None
    expected = inputs.get("data_key")
    candidate = given if given is not None else recorded
    if given is not None and not given.is_dir():
        raise ArtExtractError(f"--data {given} is not a folder: pass the DATA folder {folder.root} scored"
                              + (f" ({recorded})" if recorded else ""))
    if candidate is None or not candidate.is_dir():
        where = f"{recorded}, which is no longer there" if recorded else "a folder it does not name"
        raise ArtExtractError(f"{folder.root} scored the paintings of {where}: pass --data with that DATA folder "
                              "(moved or copied is fine)")
    info = load_data_folder(candidate)
    if expected is None:
        if given is not None and recorded is not None and given.resolve() != recorded.resolve():
            raise ArtExtractError(f"{given} is not the DATA folder {folder.root} scored ({recorded}), as far as "
                                  f"can be told: pass --data {recorded}, or {_UNKNOWN}")
        return info
    if data_key(info) != expected:
        hint = f"--data {recorded}" if recorded and recorded.is_dir() else "--data with the DATA folder it scored"
        raise ArtExtractError(f"{candidate} is not the DATA folder {folder.root} scored (its paintings, labels or "
                              f"splits differ from {recorded or 'the recorded ones'}): pass {hint}, or evaluate "
                              "again on this one")
    return info
