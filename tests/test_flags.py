"""The shorthand flags (one table, typed values), renamed config keys, and the argument checks that live in the
stages so that Python callers get the same messages as the command line."""

import logging

import pytest
import yaml

from artextract.cli.flags import FLAG_HELP
from artextract.config_files import load_config
from artextract.errors import ArtExtractError, ConfigError


def _flags_of(run_cli, command: str) -> set[str]:
    text = run_cli(command, "--help").stdout
    return {word.split("/")[0] for word in text.replace(",", " ").split() if word.startswith("--")}


def test_every_flag_of_the_table_is_offered_by_its_command_with_the_keys_default(run_cli):
    offered = {command: _flags_of(run_cli, command) for command in ("synth", "prepare", "train")}
    command_of = {"synth": "synth", "prepare": "prepare", "model": "train", "train": "train"}
    for key in FLAG_HELP:
        section, name = key.split(".")
        assert "--" + name.replace("_", "-") in offered[command_of[section]], key
    help_text = " ".join(run_cli("prepare", "--help").stdout.split())
    assert "(config prepare.cache_size; default: 256)" in help_text


def test_flags_reach_the_config_typed_and_after_set(run_cli, tmp_path):
    result = run_cli("train", "--data", tmp_path, "--out", tmp_path / "run", "--print-config",
                     "--set", "train.epochs=3", "--epochs", "7", "--tasks", "style,genre", "--no-compile",
                     "--freeze-backbone", "--precision", "32-true")
    assert result.code == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["train"]["epochs"] == 7  # a flag wins over --set
    assert resolved["model"]["tasks"] == ["style", "genre"]
    assert resolved["train"]["compile"] is False and resolved["train"]["freeze_backbone"] is True
    assert resolved["train"]["precision"] == "32-true"


@pytest.mark.parametrize(("args", "expected"), [
    (["--precision", "64-true"], "config key 'train.precision' must be one of auto, 32-true"),
    (["--epochs", "0"], "'train.epochs' must be at least 1, got 0"),
    (["--epochs", "many"], "Invalid value for '--epochs'"),
])
def test_a_wrong_flag_value_is_one_line_naming_the_flag_or_key(run_cli, tmp_path, args, expected):
    result = run_cli("train", "--data", tmp_path, "--out", tmp_path / "run", *args)
    assert result.code == 2 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_the_old_name_of_the_cache_size_still_works_and_says_the_new_one(run_cli, tmp_path, caplog):
    old = tmp_path / "old.yaml"
    old.write_text("prepare:\n  image_size: 96\n")
    with caplog.at_level(logging.WARNING, logger="artextract"):
        assert load_config(old).prepare.cache_size == 96
        assert load_config(None, ["prepare.image_size=80"]).prepare.cache_size == 80
    said = [r.getMessage() for r in caplog.records]
    assert any("'prepare.image_size' is now 'prepare.cache_size'" in m and str(old) in m for m in said), said
    assert any(m.startswith("--set: config key 'prepare.image_size'") for m in said), said

    result = run_cli("prepare", "--csv-dir", tmp_path, "--images", tmp_path, "--out", tmp_path / "d",
                     "--image-size", "64", "--print-config")
    assert result.code == 0, result.stderr
    assert yaml.safe_load(result.stdout)["prepare"]["cache_size"] == 64
    assert "--image-size of prepare is now --cache-size" in result.stderr


def test_python_callers_get_the_commands_checks(tmp_path, evaluated_run):
    from artextract.config import Config
    from artextract.predictor import load_model
    from artextract.stages.ablate import ablate, parse_seeds
    from artextract.stages.evaluate import evaluate_run
    from artextract.stages.train import train

    with pytest.raises(ArtExtractError, match="--split must be eval, select or train, got 'val'"):
        evaluate_run(evaluated_run, split="val")
    with pytest.raises(ArtExtractError, match=r"--inject-noise must be in \[0, 1\), got 1.5"):
        evaluate_run(evaluated_run, inject=1.5)
    with pytest.raises(ArtExtractError, match="is not a folder"):
        evaluate_run(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="--seeds expects integers like 0,1,2, got '0,x'"):
        parse_seeds("0,x")
    with pytest.raises(ConfigError, match="--seeds names no seed"):
        ablate(tmp_path, tmp_path / "ab", Config(), ["gap"], [])
    with pytest.raises(ConfigError, match="--folds 1 leaves nothing to score on"):
        ablate(tmp_path, tmp_path / "ab", Config(), ["gap"], [0], folds=1)
    assert not (tmp_path / "ab").exists()
    with pytest.raises(ArtExtractError, match="--data DATA is needed"):
        train(None, tmp_path / "run", Config())
    predictor = load_model(evaluated_run, "cpu")
    with pytest.raises(ArtExtractError, match="--top-k must be at least 1, got 0"):
        predictor.iter_predict([tmp_path / "a.jpg"], top_k=0)


def test_resume_takes_the_runs_own_data_folder_or_says_it_has_none(tmp_path):
    from artextract.layout import RunFolder

    run = RunFolder(tmp_path / "run")
    with pytest.raises(ArtExtractError, match=r"does not say which DATA folder .*run.json missing.*pass --data"):
        run.data_folder()
    assert run.data_folder(tmp_path / "given") == tmp_path / "given"
