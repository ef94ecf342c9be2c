import json
import logging

import pytest

from artextract.core import atomic
from artextract.core.environment import write_environment
from artextract.core.progress import Progress, setup_logging


def test_atomic_write_replaces_whole_file_or_nothing(tmp_path):
    target = tmp_path / "report.json"
    atomic.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic.atomic_open(target) as handle:
        handle.write("half a fi")
        raise RuntimeError("crash while writing")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left behind


def test_env_json_records_versions_and_command(tmp_path):
    record = json.loads(write_environment(tmp_path).read_text())
    assert record["versions"]["artextract"]
    assert record["versions"]["torch"]
    assert isinstance(record["command"], list)
    assert record["device"]["cpu_count"] >= 1


def test_progress_logs_lines_when_not_a_terminal(caplog):
    setup_logging()
    logger = logging.getLogger("artextract")
    logger.propagate = True  # let caplog see the records
    try:
        with caplog.at_level(logging.INFO, logger="artextract"), Progress(4, "work", interval=0.0,
                                                                          use_bar=False) as progress:
            for _ in range(4):
                progress.update()
    finally:
        logger.propagate = False
    lines = [r.getMessage() for r in caplog.records]
    assert any("work: 4/4 img (100%)" in line for line in lines)
