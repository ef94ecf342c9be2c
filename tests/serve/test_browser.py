"""The explorer in a real browser (headless Chromium through Playwright): filters kept in the URL and the back
button, clicks from the confusion matrix, an upload, and pages that fit 800 and 1,400 px windows."""

import socket
import threading
import time

import pytest
from PIL import Image

pytestmark = pytest.mark.browser
pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")


def _serving(run, unknown_below: float | None = None):
    """A generator: yields the address of a uvicorn server of `run`'s collection, then stops it. `unknown_below`:
    the model's open-set threshold for every task, replaced (1.01 flags every upload as unknown)."""
    import uvicorn

    from artextract.serve.app import create_app
    from artextract.serve.collection import Collection

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    collection = Collection.open(run)
    if unknown_below is not None:
        collection.predictor.info.unknown_below.update(dict.fromkeys(collection.tasks, unknown_below))
    app = create_app(collection, max_upload_mb=1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(evaluated_run):
    yield from _serving(evaluated_run)


@pytest.fixture(scope="module")
def pyramid_server(prepared_small, tmp_path_factory):
    """The recipe's kind of model (frozen backbone, every stage's statistics, linear heads), trained and evaluated
    on its own copy of the small DATA folder."""
    import shutil

    from artextract.stages.evaluate import evaluate_run
    from artextract.stages.train import train

    from conftest import tiny_train_config

    root = tmp_path_factory.mktemp("pyramid")
    data = shutil.copytree(prepared_small, root / "data", ignore=shutil.ignore_patterns("features", ".artextract.lock"))
    config = tiny_train_config(epochs=4, freeze_backbone=True)
    config.model.representation, config.model.reader = "pyramid", "none"
    train(data, root / "run", config)
    evaluate_run(root / "run", batch_size=32)
    yield from _serving(root / "run")


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    yield page
    page.close()


def test_filters_live_in_the_url_and_survive_the_back_button(page, server):
    page.goto(f"{server}/?task=artist")
    page.select_option("select[name=correct]", "no")
    page.click("button[type=submit]")
    assert "correct=no" in page.url and "task=artist" in page.url
    cards = page.locator(".grid a.card")
    if cards.count() == 0:
        pytest.skip("the tiny run got every artist right")
    assert cards.count() == page.locator(".grid a.card.wrong").count()  # every card shown is a wrong prediction
    filtered_url = page.url
    cards.first.click()
    assert "/painting/" in page.url
    page.wait_for_function("[...document.querySelectorAll('.heat img')].every(i => i.complete && i.naturalWidth > 0)")
    page.go_back()
    assert page.url == filtered_url and page.input_value("select[name=correct]") == "no"


def test_a_confusion_cell_opens_the_grid_of_that_cell(page, server):
    page.goto(f"{server}/confusion/genre")
    link = page.locator("#confusion td a").first
    expected = int(link.inner_text())
    link.click()
    assert "true=" in page.url and "pred=" in page.url
    assert page.locator(".grid a.card").count() == min(expected, 60)
    assert page.inner_text("#count").startswith(f"{expected} painting")


def test_an_uploaded_painting_is_classified_and_a_bad_file_is_explained(page, server, tmp_path, evaluated_run):
    import json

    artists = len(json.loads((evaluated_run / "eval" / "classes.json").read_text())["artist"])
    picture = tmp_path / "new.png"
    Image.new("RGB", (80, 60), (30, 90, 200)).save(picture)
    page.goto(f"{server}/new")
    page.set_input_files("#file", str(picture))
    page.click("button[type=submit]")
    assert page.locator("#pred-artist tr").count() == min(5, artists)  # the calibrated top 5
    assert page.locator(".grid a.card").count() == 8
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image at all")
    page.goto(f"{server}/new")
    page.set_input_files("#file", str(bad))
    page.click("button[type=submit]")
    assert "cannot be used as an image" in page.inner_text("[role=alert]")


@pytest.mark.parametrize("width", [800, 1400])
def test_pages_fit_the_window(browser, server, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        for path in ("/?task=style", "/painting/0", "/new"):
            page.goto(server + path)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (path, width, overflow)
        page.goto(server + "/confusion/style")  # a wide matrix scrolls inside its own box, not the page
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    finally:
        page.close()


def test_thumbnails_are_real_images(page, server):
    page.goto(f"{server}/?task=style")
    page.wait_for_function("[...document.querySelectorAll('.grid img')].slice(0, 6)"
                           ".every(i => i.complete && i.naturalWidth > 0)")


_PIXELS = """async (src) => { const image = new Image(); image.src = src; await image.decode();
  const canvas = document.createElement('canvas');
  canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
  const context = canvas.getContext('2d'); context.drawImage(image, 0, 0);
  return Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data); }"""


def test_a_pyramid_painting_page_shows_a_spatial_class_dependent_explanation(page, pyramid_server):
    """A uniform wash (what a Grad-CAM at the end of the statistics drew) would make every task's overlay of one
    painting the same picture; the explanation through the stages' statistics differs by class."""
    import numpy as np

    page.goto(f"{pyramid_server}/painting/0")
    assert "pyramid stage" in page.inner_text("#explained-by")
    page.wait_for_function("[...document.querySelectorAll('.heat img')].every(i => i.complete && i.naturalWidth > 0)")
    sources = page.eval_on_selector_all(".heat img", "images => images.map(i => i.src)")
    overlays = [np.array(page.evaluate(_PIXELS, src), dtype=float) for src in sources]
    assert len(overlays) == 3 and all(o.size == overlays[0].size for o in overlays)
    differences = [np.abs(overlays[0] - other).mean() for other in overlays[1:]]
    assert max(differences) > 2.0, differences  # grey levels of 255: the maps differ between the tasks' classes


@pytest.fixture(scope="module")
def flagging_server(evaluated_run):
    """The shared run, its open-set thresholds raised so that every upload is flagged as unknown."""
    yield from _serving(evaluated_run, unknown_below=1.01)


def test_the_upload_page_shows_the_stand_in_warning_the_unknown_flag_and_labelled_cards(page, flagging_server,
                                                                                        tmp_path):
    picture = tmp_path / "noise.png"
    Image.effect_noise((96, 96), 80).convert("RGB").save(picture)
    page.goto(f"{flagging_server}/new")
    page.set_input_files("#file", str(picture))
    page.click("button[type=submit]")
    notes = page.inner_text("main")
    assert "trained on generated stand-in paintings" in notes
    assert "unknown artist, style, genre? (under the open-set threshold)" in notes  # predict's words
    cards = page.locator(".grid a.card")
    assert cards.count() == 8 and all("artist:" in cards.nth(i).inner_text() for i in range(8))
    assert page.locator("p.generated").count() == 1  # the collection's own banner, on this page too
