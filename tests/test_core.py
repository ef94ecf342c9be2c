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
    import os
    import sys

    import torch

    from artextract.core.version import VERSION

    written = write_environment(tmp_path / "env.json")
    record = json.loads(written.read_text())
    assert written == tmp_path / "env.json"
    assert record["versions"]["artextract"] == VERSION
    assert record["versions"]["torch"] == torch.__version__.split("+")[0] or record["versions"]["torch"] == \
        torch.__version__
    assert record["command"][1:] == sys.argv[1:]
    assert record["device"]["cpu_count"] == os.cpu_count()


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
