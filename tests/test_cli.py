import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from artextract import __version__


def test_help_lists_the_stages(run_cli):
    result = run_cli("--help")
    assert result.code == 0
    listed = {line.replace("│", " ").split()[0] for line in result.stdout.splitlines()
              if line.replace("│", " ").split()}
    assert {"synth", "prepare", "train", "ablate", "evaluate", "compare", "predict", "demo"} <= listed
    train_help = run_cli("train", "--help").stdout
    assert "--freeze-backbone" in train_help and "<bool>" not in train_help  # a flag takes no value


def test_version(run_cli):
    result = run_cli("--version")
    assert result.code == 0
    assert result.stdout.strip() == f"artextract {__version__}"


def test_python_dash_m_runs_the_same_cli():
    result = subprocess.run([sys.executable, "-m", "artextract", "--version"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_unknown_command_is_a_usage_error(run_cli):
    result = run_cli("paint")
    assert result.code == 2 and "No such command 'paint'" in result.stderr, result.stderr


def test_non_empty_out_is_refused_without_force(run_cli, tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    result = run_cli("synth", tmp_path, "--artists", "2", "--per-artist", "2", "--size", "32")
    assert result.code == 2
    assert "--force" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]

    forced = run_cli("synth", tmp_path, "--artists", "2", "--per-artist", "2", "--size", "32", "--force")
    assert forced.code == 0
    assert (tmp_path / "keep.txt").read_text() == "precious"
    assert (tmp_path / "csv" / "artist_train").exists()


def test_unwritable_out_is_a_clear_error(run_cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli("synth", blocker / "sub", "--artists", "2", "--per-artist", "2")
    assert result.code == 2
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr


def test_unknown_config_key_names_the_closest(run_cli, tmp_path):
    result = run_cli("synth", tmp_path / "out", "--set", "synth.per_artsit=3")
    assert result.code == 2
    assert "synth.per_artsit" in result.stderr and "synth.per_artist" in result.stderr
    assert not (tmp_path / "out").exists()


def test_wrong_type_is_a_clear_error(run_cli, tmp_path):
    result = run_cli("synth", tmp_path / "out", "--set", "synth.size=big")
    assert result.code == 2
    assert "synth.size" in result.stderr and "int" in result.stderr


def test_config_file_and_flags_are_resolved_into_config_yaml(run_cli, tmp_path):
    import yaml

    config = tmp_path / "c.yaml"
    config.write_text("synth:\n  artists: 2\n  per_artist: 3\n  size: 32\n  seed: 5\n")
    result = run_cli("synth", tmp_path / "out", "--config", config, "--set", "synth.seed=9", "--per-artist", "4")
    assert result.code == 0, result.stderr
    resolved = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert resolved["synth"] | {"workers": 0} == {"artists": 2, "per_artist": 4, "size": 32, "val_fraction": 0.3,
                                                 "seed": 9, "quirks": False, "workers": 0}
    assert "8 paintings" in result.stdout


def test_the_demo_gives_its_recurrent_reader_a_grid_of_at_least_4x4():
    import torch

    from artextract.models import build_model
    from artextract.stages.demo import smoke_config

    config = smoke_config()
    assert config.prepare.cache_size >= config.train.image_size  # crops are never upsampled
    backbone = build_model(config.model, {t: ["a", "b"] for t in config.model.tasks}).backbone.eval()
    with torch.no_grad():
        grid = backbone(torch.zeros(1, 3, config.train.image_size, config.train.image_size)).shape[2:]
    assert grid[0] * grid[1] >= 16, grid


def test_the_smoke_preset_file_matches_the_demo_settings():
    from pathlib import Path

    from artextract.config_files import load_config
    from artextract.stages.demo import smoke_config

    preset = load_config(Path(__file__).resolve().parents[1] / "configs" / "cpu-smoke.yaml")
    assert preset.model == smoke_config().model
    assert preset.train == smoke_config().train


def test_help_shows_config_defaults_and_print_config_resolves(run_cli, tmp_path):
    import yaml

    help_text = run_cli("train", "--help").stdout
    assert "train.epochs; default: 30" in " ".join(help_text.replace("│", " ").split())
    result = run_cli("train", "--data", tmp_path, "--out", tmp_path / "run", "--epochs", "7", "--print-config")
    assert result.code == 0 and not (tmp_path / "run").exists()
    assert yaml.safe_load(result.stdout)["train"]["epochs"] == 7


def test_ablate_compares_readers_on_cached_features(run_cli, prepared_small, tmp_path):
    import json

    config = tmp_path / "c.yaml"
    config.write_text("model:\n  backbone: test_resnet\n  output_stride: 8\n  hidden_size: 8\n  tasks: [artist]\n"
                      "train:\n  epochs: 2\n  batch_size: 16\n  image_size: 32\n  workers: 0\n  accelerator: cpu\n")
    args = ["ablate", "--data", prepared_small, "--out", tmp_path / "ab", "--config", config,
            "--variants", "gap,gru-rows", "--seeds", "0,1"]
    result = run_cli(*args)
    assert result.code == 0, result.stderr
    table = json.loads((tmp_path / "ab" / "ablation.json").read_text())["table"]
    assert set(table) == {"gap", "gru-rows", "linear-probe"}
    assert len(table["gru-rows"]["artist"]["accuracy_per_run"]) == 2
    verdict = json.loads((tmp_path / "ab" / "ablation.json").read_text())["verdicts"][0]
    assert (verdict["a"], verdict["b"], verdict["seeds_a"], verdict["seeds_b"]) == ("gap", "gru-rows", 2, 2)
    assert verdict["training_variance"] and 0 <= verdict["macro_f1"]["p_value"] <= verdict["macro_f1"]["p_holm"] <= 1
    assert "Holm's correction over all 2 tests" in result.stdout
    assert "| gru-rows |" in result.stdout and (tmp_path / "ab" / "ablation.md").is_file()
    stamp = (tmp_path / "ab" / "runs" / "gap-s0" / "model.safetensors").stat().st_mtime_ns
    again = run_cli(*args)  # finished runs are reused, not trained again
    assert again.code == 0
    assert (tmp_path / "ab" / "runs" / "gap-s0" / "model.safetensors").stat().st_mtime_ns == stamp
    rerun = json.loads((tmp_path / "ab" / "ablation.json").read_text())["table"]
    assert rerun["gru-rows"]["artist"]["accuracy_per_run"] == table["gru-rows"]["artist"]["accuracy_per_run"]
    # A checkpoint restored from last.pt.prev (epoch 1 of 2) is not the finished run: trained again, not scored.
    last = tmp_path / "ab" / "runs" / "gap-s0" / "checkpoints" / "last.pt"
    last.with_name("last.pt.prev").replace(last)
    restored = run_cli(*args)
    assert restored.code == 0, restored.stderr
    assert "did not record finishing its 2 epochs with the last.pt and model.safetensors it holds now" in " ".join(
        restored.stderr.split())
    assert (tmp_path / "ab" / "runs" / "gap-s0" / "model.safetensors").stat().st_mtime_ns != stamp
    stamp = (tmp_path / "ab" / "runs" / "gap-s0" / "model.safetensors").stat().st_mtime_ns
    # Other settings (the same number of epochs): the earlier runs are not the runs asked for, and are retrained.
    changed = run_cli(*args[:-4], "--variants", "gap", "--seeds", "0", "--set", "model.hidden_size=12")
    assert changed.code == 0, changed.stderr
    assert (tmp_path / "ab" / "runs" / "gap-s0" / "model.safetensors").stat().st_mtime_ns != stamp
    assert "hidden_size: 12" in (tmp_path / "ab" / "runs" / "gap-s0" / "config.yaml").read_text()
    assert run_cli("ablate", "--data", prepared_small, "--out", tmp_path / "x", "--variants", "tcn").code == 2


def test_ablate_runs_the_partial_tuning_flip_and_pyramid_variants(run_cli, prepared_small, tmp_path):
    import json
    import shutil

    import yaml

    data = shutil.copytree(prepared_small, tmp_path / "data", ignore=shutil.ignore_patterns("features", ".*lock"))
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  backbone: test_resnet\n  output_stride: 8\n  hidden_size: 8\n  tasks: [artist]\n"
                      "train:\n  epochs: 2\n  batch_size: 16\n  image_size: 32\n  workers: 0\n  accelerator: cpu\n"
                      "  cpu_threads: 1\n")
    # Configured with the pyramid, as the real-data recipe is: the last-map variants still read the last map.
    result = run_cli("ablate", "--data", data, "--out", tmp_path / "ab", "--config", config,
                     "--variants", "gap,tune1,flip,pyramid-gru", "--seeds", "0",
                     "--set", "model.representation=pyramid", "--set", "model.reader=none")
    assert result.code == 0, result.stderr
    table = json.loads((tmp_path / "ab" / "ablation.json").read_text())["table"]
    assert {"tune1", "flip", "pyramid-gru"} <= set(table)
    # The tuned stage's parameters count as trained; train settings of a variant reach its run.
    assert table["tune1"]["artist"]["trainable_parameters"] > table["gap"]["artist"]["trainable_parameters"] + 10_000
    tune1 = yaml.safe_load((tmp_path / "ab" / "runs" / "tune1-s0" / "config.yaml").read_text())
    assert tune1["model"]["tuned_stages"] == 1 and tune1["train"]["backbone_lr_scale"] == 0.1
    flip = yaml.safe_load((tmp_path / "ab" / "runs" / "flip-s0" / "config.yaml").read_text())
    assert flip["train"]["feature_hflip"] is True and flip["model"]["tuned_stages"] == 0
    gap = yaml.safe_load((tmp_path / "ab" / "runs" / "gap-s0" / "config.yaml").read_text())
    pyramid = yaml.safe_load((tmp_path / "ab" / "runs" / "pyramid-gru-s0" / "config.yaml").read_text())
    assert gap["model"]["representation"] == "map" and pyramid["model"]["reader"] == "gru"
    names = [p.name for p in (data / "features").iterdir()]
    kinds = sorted("tune1" if "-tune1-" in n else "pyramid" if "-pyramid-" in n else "last map" for n in names)
    assert kinds == ["last map", "pyramid", "tune1"]  # one cache per kind, never shared


def test_the_python_api_page_runs(evaluated_run, tmp_path, monkeypatch):
    """docs/python-api.md's example, with its model and image names pointed at a small trained run."""
    import re
    import shutil
    from pathlib import Path

    from PIL import Image

    page = (Path(__file__).resolve().parents[1] / "docs" / "python-api.md").read_text()
    code = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    code = code.replace("runs/wikiart-all/model.safetensors", str(evaluated_run / "model.safetensors"))
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (60, 40), (200, 120, 40)).save("monet.jpg")
    (tmp_path / "paintings").mkdir()
    shutil.copy("monet.jpg", tmp_path / "paintings" / "a.jpg")
    exec(compile(code, "python-api.md", "exec"), {})
    assert sorted(p.name for p in (tmp_path / "cams").iterdir()) == ["a.cam.png"]
    assert not list((tmp_path / "paintings").glob("*.png"))  # nothing written beside the inputs


def test_next_command_hints_run_as_printed_without_an_activated_venv(monkeypatch, tmp_path):
    """After `make demo` the venv is not on PATH: the hint names the program by the path it was started with."""
    program = Path(sys.executable).parent / "artextract"
    if not program.is_file():
        pytest.skip(f"no console script at {program}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no venv on it
    shown = subprocess.run([str(program), "synth", "s", "--artists", "2", "--per-artist", "2", "--size", "32"],
                           capture_output=True, text=True, check=True).stdout
    (hint,) = [line.removeprefix("next: ") for line in shown.splitlines() if line.startswith("next: ")]
    assert hint.startswith(str(program)), hint
    words = shlex.split(hint.replace("DATA", "d"))
    done = subprocess.run(words, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_usage_errors_are_one_line_naming_the_help(run_cli):
    """Issue 26: README promises one line for bad usage; typer printed a four-line box."""
    for args, expected in [(("train", "--bogus"), "No such option: --bogus"),
                           (("traim",), "No such command 'traim'. Did you mean 'train'?"),
                           (("train", "--out", "x", "--epochs", "abc"), "Invalid value for '--epochs'")]:
        result = run_cli(*args)
        assert result.code == 2, (args, result.stderr)
        (line,) = result.stderr.splitlines()
        assert line.startswith("artextract: error: ") and expected in line and "--help`)" in line
    assert run_cli("--help").code == 0


_REPORT_TORCH = ("import atexit, sys; atexit.register(lambda: print('torch ' + ('loaded' if 'torch' in sys.modules "
                 "else 'not loaded'), file=sys.stderr)); from artextract.cli import main; main()")


def test_train_answers_a_wrong_data_or_task_before_loading_torch(prepared_small, tmp_path, make_synth):
    """torch and timm take seconds to load on a busy machine: a mistake in the command is answered before."""
    synth = make_synth(tmp_path / "synth", artists=3, per_artist=4, size=40)
    cases = [([], "--data is missing"), (["--data", prepared_small, "--tasks", "artists"], "task 'artists' is not in"),
             (["--data", tmp_path / "nope"], "has no manifest.parquet"), (["--data", synth], "generated paintings")]
    for args, message in cases:
        done = subprocess.run([sys.executable, "-c", _REPORT_TORCH, "train", "--out", tmp_path / "run", *args],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "torch not loaded" in done.stderr, (args, done.stderr)


def test_ablates_help_lists_every_variant_from_its_registry(run_cli):
    from artextract.stages.ablate_variants import VARIANTS

    text = " ".join(run_cli("ablate", "--help").stdout.split())  # rich wraps the help: words, not lines
    listed = text.split("Comma-separated variants to compare:")[1].split("or any registered reader")[0]
    assert [name.strip().replace(" ", "") for name in listed.split(",") if name.strip()] == list(VARIANTS)
