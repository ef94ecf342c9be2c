"""The explorer's pages and its safety, through an in-process client (no socket)."""

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient

from artextract.serve.app import create_app
from artextract.serve.collection import Collection


@pytest.fixture(scope="module")
def collection(evaluated_run):
    return Collection.open(evaluated_run)


@pytest.fixture(scope="module")
def client(collection):
    return TestClient(create_app(collection, max_upload_mb=1))


def _png(size=(64, 48), colour=(200, 60, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_grid_filters_and_pages_as_the_url_says(client, collection):
    view = collection.task_view("artist")
    wrong = view[~view["correct"]]
    page = client.get("/", params={"task": "artist", "correct": "no"})
    assert page.status_code == 200
    assert f"{len(wrong)} painting" in page.text
    shown = {int(r) for r in re.findall(r'href="/painting/(\d+)"', page.text)}
    assert shown == set(wrong["row"].head(60))

    cell = view.iloc[0]
    filtered = client.get("/", params={"task": "artist", "true": cell["true"], "pred": cell["pred"]})
    expected = view[(view["true"] == cell["true"]) & (view["pred"] == cell["pred"])]
    assert {int(r) for r in re.findall(r'href="/painting/(\d+)"', filtered.text)} == set(expected["row"])

    least = client.get("/", params={"task": "genre", "sort": "confidence"})
    rows = [int(r) for r in re.findall(r'href="/painting/(\d+)"', least.text)]
    genre = collection.task_view("genre").set_index("row")["confidence"]
    assert list(genre[rows]) == sorted(genre[rows])  # least confident first
    flagged = client.get("/", params={"task": "style", "flagged": "yes"})
    assert re.findall(r'href="/painting/(\d+)"', flagged.text)
    assert all(collection.task_view("style").set_index("row").loc[int(r), "flagged"]
               for r in re.findall(r'href="/painting/(\d+)"', flagged.text))


def test_the_painting_page_shows_labels_predictions_heat_maps_and_neighbours(client, collection):
    page = client.get("/painting/2")
    assert page.status_code == 200
    record = collection.row(2)
    assert record["path"] in page.text
    name, probability = collection.top(2, "artist")[0]  # calibrated by the model's temperature, as predict is
    assert f"{probability:.3f}" in page.text and name in page.text
    for task in collection.tasks:
        assert f"/heatmap/2/{task}.png" in page.text
    neighbours = [int(r) for r in re.findall(r'href="/painting/(\d+)"', page.text)]
    assert len(neighbours) == 8 and 2 not in neighbours
    heat = client.get("/heatmap/2/artist.png")
    assert heat.status_code == 200 and heat.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(heat.content)).size[0] > 0
    thumb = client.get("/thumb/2.jpg")
    assert thumb.headers["content-type"] == "image/jpeg"
    assert np.asarray(Image.open(io.BytesIO(thumb.content))).shape[2] == 3


def test_confusion_cells_link_to_the_grid_filtered_to_that_cell(client, collection):
    page = client.get("/confusion/genre")
    assert page.status_code == 200
    links = re.findall(r'href="(/\?task=genre&amp;true=[^"]+)"', page.text)
    assert links
    matrix = collection.metrics["tasks"]["genre"]["confusion"]
    assert len(links) == sum(1 for row in matrix for v in row if v)


def test_a_new_painting_is_classified_with_heat_maps_and_neighbours(client):
    result = client.post("/new", files={"image": ("mine.png", _png(), "image/png")})
    assert result.status_code == 200, result.text
    assert 'id="pred-artist"' in result.text and "data:image/png;base64," in result.text
    assert len(re.findall(r'href="/painting/(\d+)"', result.text)) == 8


def test_the_upload_page_says_what_predict_says_of_the_same_image(client, collection, tmp_path, monkeypatch):
    import html

    from artextract.engine.checkpoint import synthetic_warning
    from artextract.report.terminal import unknown_phrase

    (tmp_path / "mine.png").write_bytes(_png())
    (predicted,) = collection.predictor.similar(tmp_path / "mine.png", k=8, index=collection.index)
    page = html.unescape(client.post("/new", files={"image": ("mine.png", _png(), "image/png")}).text)
    assert synthetic_warning("This model", "an image") in page  # the stand-in model says so, as predict does
    if predicted["unknown"]:
        assert unknown_phrase(predicted["unknown"]) in page
    for neighbour in predicted["similar"]:  # every similar painting's card names its classes
        for task, name in neighbour["labels"].items():
            assert f"{task}: {name or 'no label'}" in page
    # The open-set flag, forced for one task: shown in the page's words, which are the command line's.
    monkeypatch.setitem(collection.predictor.info.unknown_below, "genre", 1.01)
    forced = html.unescape(client.post("/new", files={"image": ("mine.png", _png(), "image/png")}).text)
    assert "unknown genre? (under the open-set threshold)" in forced


@pytest.mark.parametrize(("payload", "status", "message"), [
    (b"this is not an image", 422, "cannot be used as an image"),
    (b"", 400, "empty"),
    (b"\xff" * (1024 * 1024 + 10), 413, "larger than the 1 MB"),
])
def test_bad_uploads_get_a_clear_message_in_the_page(client, payload, status, message):
    result = client.post("/new", files={"image": ("bad.png", payload, "image/png")})
    assert result.status_code == status and message in result.text
    assert 'role="alert"' in result.text


def test_only_the_collections_own_paintings_are_served(client, collection):
    for path in ("/thumb/-1.jpg", f"/thumb/{len(collection.predictions)}.jpg", "/image/../../etc/passwd",
                 "/thumb/..%2F..%2Fetc%2Fpasswd.jpg", "/image//etc/passwd", "/painting/%2e%2e", "/heatmap/1/nope.png",
                 "/confusion/..%2Fetc", "/static/../../etc/passwd"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "root:" not in response.text


def test_hostile_class_names_are_escaped(collection):
    hostile = dict(collection.classes)
    hostile["artist"] = ['<script>alert(1)</script>' if i == 0 else name for i, name in enumerate(hostile["artist"])]
    collection_copy = Collection(collection.run, collection.evaluation, collection.data, collection.predictions,
                                 hostile, collection.outliers, collection.metrics)
    client = TestClient(create_app(collection_copy))
    for url in ("/?task=artist", "/confusion/artist", "/painting/0"):
        text = client.get(url).text
        assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/confusion/artist").text


def test_an_upload_of_unstated_size_is_refused_before_it_is_read(client):
    def chunks():  # a chunked body: no Content-Length, so its size is unknown until it has been stored
        yield b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
        yield b"\x00" * 1024
        yield b"\r\n--x--\r\n"

    result = client.post("/new", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert result.status_code == 411 and "Content-Length" in result.text


def test_a_paintings_heat_map_explains_the_class_its_page_shows(collection):
    """The stored prediction picks the class (no forward pass to find it again); it is the model's top-1."""
    import threading

    from artextract.report.images import overlay_png

    predictor, square = collection.predictor, collection.square(3)
    for task in collection.tasks:
        top, heat = predictor.heatmaps(square[None], task)  # the top-1 class found by a forward pass
        assert int(top[0]) == int(collection.row(3)[f"pred_{task}"])
        expected = overlay_png(predictor.preprocessing.visible(square), heat[0])
        assert collection.heatmap_png(3, task, threading.Lock()) == expected


def test_the_label_issues_view_ranks_the_audit_beside_the_suggested_class(evaluated_run, audited_small):
    collection = Collection.open(evaluated_run, audit=audited_small.out)
    client = TestClient(create_app(collection))
    assert 'href="/issues"' in client.get("/").text
    frame = audited_small.tasks["style"].frame
    page = client.get("/issues", params={"task": "style", "flagged": "no"})
    assert page.status_code == 200 and f"{len(frame)} paintings" in page.text
    ranks = [int(r) for r in re.findall(r'id="rank-(\d+)"', page.text)]
    assert ranks == list(range(1, min(len(frame), 30) + 1))  # the audit's order
    top = frame.iloc[0]
    assert f"suggested <b>{top['suggested_name']}</b>" in page.text
    for neighbour in top["nearest_of_suggested"].split(";"):
        assert f"{top['suggested_name']}: {neighbour}" in page.text  # beside it, the suggested class's paintings
    flagged = client.get("/issues", params={"task": "style"})
    assert len(re.findall(r'id="rank-', flagged.text)) == min(audited_small.tasks["style"].quota, 30)
    listed = int(top["cache_index"])
    assert client.get(f"/audited/{listed}.jpg").headers["content-type"] == "image/jpeg"
    unlisted = max(collection.issues.cache_rows) + 1000
    assert client.get(f"/audited/{unlisted}.jpg").status_code == 404  # only the audit's paintings are served


def test_without_an_audit_the_view_says_how_to_make_one(client):
    page = client.get("/issues")
    assert page.status_code == 404 and "artextract audit --data DATA --out AUDIT" in page.text


def test_an_audit_of_other_data_is_refused(evaluated_run, audited_small, tmp_path):
    import json
    import shutil

    from artextract.errors import ArtExtractError

    other = tmp_path / "audit"
    shutil.copytree(audited_small.out, other, ignore=shutil.ignore_patterns("folds", "oof.parquet"))
    record = json.loads((other / "audit.json").read_text())
    (other / "audit.json").write_text(json.dumps(record | {"data": str(tmp_path / "elsewhere")}))
    with pytest.raises(ArtExtractError, match="serve a run trained on the audited DATA"):
        Collection.open(evaluated_run, audit=other)


def test_a_client_leaving_mid_upload_is_one_line_in_the_log(collection, caplog):
    import asyncio
    import logging

    app = create_app(collection, max_upload_mb=1)
    scope = {"type": "http", "method": "POST", "path": "/new", "raw_path": b"/new", "query_string": b"",
             "root_path": "", "scheme": "http", "server": ("test", 80), "client": ("test", 1), "http_version": "1.1",
             "headers": [(b"content-type", b"multipart/form-data; boundary=x"), (b"content-length", b"5000")]}
    chunks = [{"type": "http.request", "body": b"--x\r\nContent-Disposition: form-data; name=\"image\"; "
                                               b"filename=\"a.png\"\r\n\r\n\x89PNG", "more_body": True},
              {"type": "http.disconnect"}]
    sent = []

    async def receive():
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    with caplog.at_level(logging.INFO, logger="artextract"):
        asyncio.run(app(scope, receive, send))
    assert [r.getMessage() for r in caplog.records] == ["serve: a client left in the middle of its upload"]
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.parametrize("pixels", [1_000, 50_000_000])
def test_uploads_are_decoded_one_per_core_and_large_ones_one_at_a_time(monkeypatch, pixels):
    import os
    import threading
    import time

    from artextract.serve import app as server

    running, most = [0], [0]
    guard = threading.Lock()

    def slow_decode(data, size, max_pixels):
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with guard:
            running[0] -= 1
        return np.zeros((size, size, 3), np.uint8), size, size

    monkeypatch.setattr("artextract.data.decode.declared_pixels", lambda data, max_pixels: pixels)
    monkeypatch.setattr("artextract.data.decode.decode_square", slow_decode)
    threads = [threading.Thread(target=server.decode_upload, args=(b"x", 8)) for _ in range(4 * (os.cpu_count() or 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if pixels > server.LARGE_PIXELS:
        assert most[0] == 1
    else:
        assert 1 <= most[0] <= (os.cpu_count() or 1)


_PEAK = """
import json, re, sys, threading
from pathlib import Path
from artextract.serve.app import decode_upload
def status(key):  # kB; VmHWM is this program's own peak (ru_maxrss would keep the forking parent's)
    return int(re.search(key + r":\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))
data, copies = Path(sys.argv[1]).read_bytes(), int(sys.argv[2])
before = status("VmHWM")
threads = [threading.Thread(target=decode_upload, args=(data, 224)) for _ in range(copies)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"peak": status("VmHWM") - before, "before": before, "resident": status("VmRSS")}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc (Linux)")
def test_four_concurrent_uploads_of_a_huge_png_peak_like_one_and_give_the_memory_back(tmp_path):
    import json
    import subprocess
    import sys

    png = tmp_path / "huge.png"  # 40 megapixels of RGBA: 35 KB on disk, about 0.5 GB to decode
    Image.new("RGBA", (8000, 5000), (120, 80, 40, 200)).save(png)

    def measure(copies: int) -> dict:
        done = subprocess.run([sys.executable, "-c", _PEAK, str(png), str(copies)], capture_output=True, text=True,
                              timeout=300, check=True)
        return json.loads(done.stdout)

    one, four = measure(1), measure(4)
    assert one["peak"] > 200_000  # KB: the decode is large enough to measure
    assert four["peak"] < 1.5 * one["peak"], (one, four)  # one large decode at a time
    assert four["resident"] - four["before"] < 150_000, four  # handed back, not kept by the allocator


def test_every_page_of_generated_stand_ins_says_so(client, collection):
    from artextract.report.summary import GENERATED_NOTE

    assert collection.data.synthetic()  # the shared run's DATA was prepared from `artextract synth`
    for url in ("/", "/painting/0", "/confusion/artist", "/new"):
        assert GENERATED_NOTE in client.get(url).text, url
    report = (collection.evaluation.root / "report.html").read_text(encoding="utf-8")
    assert GENERATED_NOTE in report and GENERATED_NOTE in (collection.evaluation.root / "report.md").read_text()


def test_a_flipped_label_reads_as_in_the_report_and_every_number_is_named(client, collection):
    import html

    outliers = collection.outliers
    noisy = outliers[(outliers["task"] == "artist") & outliers["injected_noise"].astype(bool)].iloc[0]
    view = collection.task_view("artist").set_index("path")
    row, true = int(view.loc[noisy["path"], "row"]), view.loc[noisy["path"], "true"]
    grid = html.unescape(client.get("/", params={"task": "artist", "noise": "yes"}).text)
    assert f"label flipped to {noisy['label_name']} (noise test)" in grid and "confidence " in grid
    page = html.unescape(client.get(f"/painting/{row}").text)
    # the report's label (the flipped one) and the true one, both named
    assert f"its label was flipped on purpose from {true} to {noisy['label_name']}" in page
    assert "similarity " in page and ">?<" not in page and "· ?" not in page  # a missing label is "no label"
