import json

from artextract.config import Config, ModelConfig, PrepareConfig, SynthConfig, TrainConfig


def test_demo_runs_the_whole_pipeline(run_cli, tmp_path, monkeypatch):
    """synth -> prepare -> train -> evaluate through `artextract demo`, scaled down to seconds."""
    import artextract.stages.demo

    small = Config(synth=SynthConfig(artists=4, per_artist=20, size=48, quirks=True, workers=1),
                   prepare=PrepareConfig(cache_size=32, workers=1),
                   model=ModelConfig(backbone="test_resnet", hidden_size=16, output_stride=8),
                   train=TrainConfig(epochs=2, batch_size=16, image_size=32, accelerator="cpu", workers=0,
                                     patience=0))
    monkeypatch.setattr(artextract.stages.demo, "smoke_config", lambda: small)
    result = run_cli("demo", tmp_path / "demo")
    assert result.code == 0, result.stderr
    assert "accuracy" in result.stdout and "report:" in result.stdout
    out = tmp_path / "demo"
    for path in ["synth/synth.json", "data/manifest.parquet", "data/prepare_report.md", "run/model.safetensors",
                 "run/metrics.csv", "run/eval/report.html", "run/eval/outliers.csv", "config.yaml", "env.json"]:
        assert (out / path).is_file(), path
    metrics = json.loads((out / "run" / "eval" / "metrics.json").read_text())
    assert metrics["tasks"]["artist"]["noise_detection"]["fraction"] == 0.05
    again = run_cli("demo", tmp_path / "demo")
    assert again.code == 2 and "--force" in again.stderr


def test_demo_runs_twice_with_force(run_cli, tmp_path, monkeypatch):
    """`make demo; make demo`: the second run replaces the first one's outputs."""
    import artextract.stages.demo

    small = Config(synth=SynthConfig(artists=3, per_artist=12, size=48, workers=1),
                   prepare=PrepareConfig(cache_size=32, workers=1),
                   model=ModelConfig(backbone="test_resnet", hidden_size=8, output_stride=8),
                   train=TrainConfig(epochs=1, batch_size=8, image_size=32, accelerator="cpu", workers=0))
    monkeypatch.setattr(artextract.stages.demo, "smoke_config", lambda: small)
    for _ in range(2):
        result = run_cli("demo", tmp_path / "demo", "--force")
        assert result.code == 0, result.stderr
    assert json.loads((tmp_path / "demo" / "run" / "eval" / "metrics.json").read_text())["split"] == "eval"
