"""`artextract serve` as a user starts it: a real uvicorn server on a loopback port, stopped by Ctrl-C."""

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_answers_on_the_loopback_and_warns_when_open_to_the_network(evaluated_run, tmp_path):
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "artextract", "serve", str(evaluated_run), "--port", str(port),
                               "--host", "0.0.0.0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "the server did not answer within 120 s"
                time.sleep(0.5)
        assert "ArtExtract" in page and "/painting/" in page
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/thumb/0.jpg", timeout=10) as response:
            assert response.headers["content-type"] == "image/jpeg" and response.read(3) == b"\xff\xd8\xff"
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert "there is no authentication" in stderr
    assert server.returncode in (0, 130, -signal.SIGINT), stderr
    assert "Traceback" not in stderr


def test_a_port_in_use_is_refused_in_one_line_before_anything_loads(evaluated_run, run_cli, monkeypatch):
    from artextract.serve.collection import Collection

    def must_not_load(*args, **kwargs):
        raise AssertionError("the collection was loaded before the port was checked")

    monkeypatch.setattr(Collection, "open", must_not_load)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("serve", evaluated_run, "--port", taken.getsockname()[1])
    assert result.code == 2 and "cannot listen on 127.0.0.1" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr and "serving" not in result.stderr  # never says it serves, then fails
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unevaluated_run_is_refused_in_one_line_before_saying_it_serves(evaluated_run, run_cli, tmp_path):
    import shutil

    run = shutil.copytree(evaluated_run, tmp_path / "run", ignore=shutil.ignore_patterns("eval", "similar*"))
    result = run_cli("serve", run, "--port", _free_port())
    assert result.code == 2 and "has not been evaluated" in result.stderr and f"evaluate --run {run}" in result.stderr
    assert "serving" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
