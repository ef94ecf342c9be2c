import pytest

from artextract.config import Config
from artextract.config_files import load_config, write_config
from artextract.errors import ConfigError


def test_defaults():
    config = load_config()
    assert config.synth.artists == 23
    assert config.prepare.protocol == "leak-free"


def test_yaml_then_overrides_with_type_coercion(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("synth:\n  size: 64\nprepare:\n  select_fraction: 0.2\n")
    config = load_config(path, ["synth.quirks=yes", "prepare.max_pixels=1_000", "prepare.protocol=inner-join",
                                "synth.size=96"])
    assert config.synth.size == 96
    assert config.synth.quirks is True
    assert config.prepare.select_fraction == 0.2
    assert config.prepare.max_pixels == 1000
    assert config.prepare.protocol == "inner-join"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("synth.sise=3", "did you mean 'synth.size'"),
        ("synht.size=3", "did you mean 'synth.size'"),
        ("synth.size=3.5", "synth.size' expects int"),
        ("synth.quirks=maybe", "synth.quirks' expects bool"),
        ("prepare.protocol=random", "must be one of leak-free, inner-join"),
        ("prepare.select_fraction=lots", "prepare.select_fraction' expects float"),
        ("synth.size", "section.key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(None, [override])


def test_yaml_errors(tmp_path):
    bad_type = tmp_path / "bad.yaml"
    bad_type.write_text("synth:\n  size: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"synth\.size"):
        load_config(bad_type)
    unknown_section = tmp_path / "unknown.yaml"
    unknown_section.write_text("synht:\n  size: 3\n")
    with pytest.raises(ConfigError, match="did you mean 'synth'"):
        load_config(unknown_section)
    broken = tmp_path / "broken.yaml"
    broken.write_text("synth: [\n")
    with pytest.raises(ConfigError, match="not valid YAML at line 2, column 1: expected the node content"):
        load_config(broken)
    indented = tmp_path / "indented.yaml"
    indented.write_text("train:\n  epochs: 2\n   batch_size: 3\n")
    with pytest.raises(ConfigError, match="not valid YAML at line 3, column 14: mapping values are not allowed"):
        load_config(indented)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_written_config_loads_back_identically(tmp_path):
    config = load_config(None, ["synth.seed=3", "prepare.cache_size=128"])
    write_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert load_config(tmp_path / "config.yaml") != Config()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=0", "'train.epochs' must be at least 1, got 0"),
        ("train.lr=-1", "'train.lr' must be greater than 0.0"),
        ("train.lr=nan", "'train.lr' must be greater than 0.0, got nan"),
        ("train.batch_size=-1", "'train.batch_size' must be at least 1"),
        ("model.hidden_size=60000", "'model.hidden_size' must be in [1, 4096]"),
        ("prepare.select_fraction=1", "'prepare.select_fraction' must be in [0.0, 1.0)"),
        ("synth.artists=24", "'synth.artists' must be in [1, 23]"),
    ],
)
def test_out_of_range_values_are_refused_when_the_config_is_built(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=[override])
    assert message in str(caught.value)


def test_out_of_range_flags_exit_2_with_one_line(run_cli, tmp_path):
    for flags in (["--epochs", "0"], ["--image-size", "0"], ["--batch-size", "-1"], ["--set", "train.lr=-1"]):
        result = run_cli("train", "--data", tmp_path / "data", "--out", tmp_path / "run", *flags)
        assert result.code == 2, flags
        assert result.stderr.count("\n") == 1 and "must be" in result.stderr, result.stderr
        assert not (tmp_path / "run").exists()


def test_analysis_needs_no_torch():
    import subprocess
    import sys

    code = ("import sys; import artextract.analysis.metrics, artextract.analysis.calibration, "
            "artextract.analysis.outliers, artextract.layout; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
