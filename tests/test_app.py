"""The web page (``python -m vpd_lightning.app``) in a real headless Chromium driven by Playwright: one page serving
a depth, a segmentation and a referring model; choose the model, upload an image (type the sentence), wait for the
result, check the shown picture and the download against the same prediction made in-process.

The browser is Debian's ``chromium`` (``make test`` installs it with apt when it is missing; Playwright's own
browser download is not used). Without a browser the test fails, saying how to get one: it never passes silently.
Set ``VPD_APP_SCREENSHOT=docs/app.png`` to keep the page's screenshot.
"""

from __future__ import annotations

import io
import os
import shutil
import socket

import numpy as np
import pytest
from PIL import Image
from tiny_config import make_cfg

from vpd_lightning.app import ModelApp, build_page, load_predictors, serve
from vpd_lightning.export import CheckpointError

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = os.environ.get("VPD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail(
            "no Chromium for the browser test: `make test` installs it (apt-get install chromium), or set "
            "VPD_CHROMIUM=<path of a Chromium/Chrome binary>"
        )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(task_checkpoints, tmp_path_factory):
    """One app serving the three tasks' models (labels ``"<task>: last.ckpt"``), as ``ckpt_path=[a,b,c]`` does."""
    paths = [task_checkpoints[task] for task in ("depth", "segmentation", "referring")]
    return ModelApp(load_predictors(paths), workdir=str(tmp_path_factory.mktemp("app")))


def _label(app: ModelApp, task: str) -> str:
    (label,) = [label for label, predictor in app.predictors.items() if predictor.task == task]
    return label


@pytest.fixture(scope="module")
def url(app):
    import gradio as gr

    page = build_page(app)
    theme = gr.themes.Default(font=["sans-serif"], font_mono=["monospace"])
    page.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True, theme=theme)
    yield page.local_url
    page.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def _png(page, url: str) -> np.ndarray:
    response = page.request.get(url)
    assert response.ok, url
    return np.asarray(Image.open(io.BytesIO(response.body())))


def test_page_predicts_depth_in_the_browser(app, url, browser, tmp_path, nyu_root):
    # a generated room of the test split (64x96), enlarged so that the page's screenshot shows something
    room = sorted((nyu_root / "official_splits" / "test").rglob("rgb_*"))[0]
    Image.open(room).convert("RGB").resize((144, 96)).save(tmp_path / "room.png")
    (tmp_path / "broken.png").write_bytes(b"this is not a PNG file")
    label = _label(app, "depth")
    assert list(app.predictors)[0] == label  # the page's default choice
    expected_picture, expected_file, _ = app.run(label, str(tmp_path / "room.png"))
    expected_depth = np.asarray(Image.open(expected_file))

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url)
    page.locator("#vpd-run").wait_for(timeout=60_000)
    page.locator("#vpd-input input[type=file]").set_input_files(str(tmp_path / "room.png"))
    page.locator("#vpd-input img").first.wait_for(timeout=30_000)  # the preview of the upload
    page.locator("#vpd-run").click()
    status = page.locator("#vpd-status")
    status.get_by_text("depth on 144x96 px").wait_for(timeout=120_000)
    shown = _png(page, page.locator("#vpd-output img").first.get_attribute("src"))
    assert shown.shape == expected_picture.shape and shown.shape[0] > 40  # the depth map, then its scale bar
    assert np.array_equal(shown[..., :3], expected_picture)
    assert "room_depth.png" in page.locator("#vpd-download").inner_text().replace("\n", "")
    href = page.locator("#vpd-download a").first.get_attribute("href")
    assert href.endswith("room_depth.png")
    downloaded = _png(page, href)
    assert downloaded.dtype == np.uint16 and downloaded.shape == (96, 144)
    assert np.array_equal(downloaded, expected_depth)
    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
    if os.environ.get("VPD_APP_SCREENSHOT"):
        shutil.copy(tmp_path / "app.png", os.environ["VPD_APP_SCREENSHOT"])

    # a file that is not an image: the page says so, the server keeps serving
    page.goto(url)
    page.locator("#vpd-run").wait_for(timeout=60_000)
    page.locator("#vpd-input input[type=file]").set_input_files(str(tmp_path / "broken.png"))
    page.locator("#vpd-run").click()
    status.get_by_text("is not an image that can be decoded").wait_for(timeout=60_000)
    assert "Error:" in status.inner_text() and "broken.png" in status.inner_text()
    page.close()


def _choose(page, label: str) -> None:
    page.locator("#vpd-model input").click()
    page.get_by_role("option", name=label, exact=True).click()
    assert page.locator("#vpd-model input").input_value() == label


def test_page_segments_and_refers_in_the_browser(app, url, browser, tmp_path, ade_root):
    """The same page with the segmentation model (overlay + legend, label PNG), then, on the same upload, the
    referring model (sentence typed on the page, mask overlay, mask PNG; an empty sentence is an error shown)."""
    scene = sorted((ade_root / "images" / "validation").glob("*.jpg"))[0]
    Image.open(scene).convert("RGB").save(tmp_path / "scene.png")
    seg, ref = _label(app, "segmentation"), _label(app, "referring")
    sentence = "the red circle"
    seg_picture, seg_file, _ = app.run(seg, str(tmp_path / "scene.png"))
    ref_picture, ref_file, _ = app.run(ref, str(tmp_path / "scene.png"), sentence)
    seg_label, ref_mask = np.asarray(Image.open(seg_file)), np.asarray(Image.open(ref_file))
    height, width = seg_label.shape
    assert seg_picture.shape[0] > height  # the overlay, then the legend underneath
    assert ref_picture.shape == (height, width, 3)

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url)
    page.locator("#vpd-run").wait_for(timeout=60_000)
    status = page.locator("#vpd-status")
    _choose(page, seg)
    page.locator("#vpd-input input[type=file]").set_input_files(str(tmp_path / "scene.png"))
    page.locator("#vpd-input img").first.wait_for(timeout=30_000)
    page.locator("#vpd-run").click()
    status.get_by_text(f"segmentation on {width}x{height} px").wait_for(timeout=120_000)
    assert f"{len(np.unique(seg_label))} classes present" in status.inner_text()
    shown = _png(page, page.locator("#vpd-output img").first.get_attribute("src"))
    assert np.array_equal(shown[..., :3], seg_picture)
    href = page.locator("#vpd-download a").first.get_attribute("href")
    assert href.endswith("scene_label.png")
    downloaded = _png(page, href)
    assert downloaded.dtype == np.uint8 and downloaded.shape == (height, width)
    assert np.array_equal(downloaded, seg_label)

    # referring, same image: the sentence typed on the page
    _choose(page, ref)
    page.locator("#vpd-sentence textarea").fill(sentence)
    page.locator("#vpd-run").click()
    status.get_by_text(f'mask of "{sentence}"').wait_for(timeout=120_000)
    shown = _png(page, page.locator("#vpd-output img").first.get_attribute("src"))
    assert np.array_equal(shown[..., :3], ref_picture)
    href = page.locator("#vpd-download a").first.get_attribute("href")
    assert href.endswith("scene_mask.png")
    downloaded = _png(page, href)
    assert set(np.unique(downloaded)) <= {0, 255} and np.array_equal(downloaded, ref_mask)

    # no sentence: the page says what is missing
    page.locator("#vpd-sentence textarea").fill("   ")
    page.locator("#vpd-run").click()
    status.get_by_text("needs a sentence").wait_for(timeout=60_000)
    assert "Error:" in status.inner_text()
    page.close()


def test_app_errors_without_a_page(app, tmp_path):
    label = _label(app, "depth")
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "big.png")
    small = ModelApp(app.predictors, max_pixels=1000, workdir=str(tmp_path / "work"))
    picture, download, status = small.run(label, str(tmp_path / "big.png"))
    assert picture is None and download is None
    assert status == "**Error:** 'big.png' is 40x30 = 0.0 MP; this page takes at most 0.0 MP (max_pixels)"
    assert app.run(label, None)[2] == "**Error:** upload or paste an image first"
    assert app.run("segmentation: nothing", str(tmp_path / "big.png"))[2].startswith("**Error:** choose a model")
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())  # nothing written


def test_app_refuses_a_file_that_is_not_a_task_checkpoint(tmp_path):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.ckpt"):
        serve(make_cfg([f"ckpt_path={tmp_path / 'notes.ckpt'}"], "app"))
