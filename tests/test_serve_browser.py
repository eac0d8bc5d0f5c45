"""Lesson 09's page in a real browser: draw with the mouse, read the prediction off the
page.

Headless Chromium, driven by Selenium (tests/browser.py). Skipped, with the reason,
where the browser is not installed; CI (.ci/run) installs it, so there it always runs.
"""

import browser
import pytest
from conftest import OUTPUT_DIR
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.skipif(bool(browser.missing()), reason=browser.missing())


@pytest.fixture(scope="module")
def page(served_models_dir):
    stop, url = browser.serve(served_models_dir)
    driver = browser.start_browser()
    driver.get(url)
    yield driver
    driver.quit()
    stop()


@pytest.mark.parametrize("digit", ["1", "0", "7"])
def test_a_digit_drawn_with_the_mouse_is_read_on_the_page(page, digit):
    browser.clear(page)
    browser.draw(page, digit)
    shown = browser.predictions(page)
    assert list(shown.values()) == [digit], shown
    seen = page.execute_script(
        "const d = document.getElementById('seen').getContext('2d')"
        ".getImageData(0,0,28,28);"
        "return Array.from(d.data).filter((v, i) => i % 4 === 0 && v > 128).length;"
    )
    # the 28x28 image the model saw is drawn on the page, with ink in it
    assert seen > 20
    page.save_screenshot(str(OUTPUT_DIR / f"09_page_{digit}.png"))


def test_clear_empties_the_page(page):
    browser.draw(page, "1")
    browser.predictions(page)
    browser.clear(page)
    assert page.find_elements("css selector", ".model") == []


def test_an_error_is_shown_on_the_page(served_models_dir):
    """A drawing over the body limit: the server's one-line error appears on the page,
    rather than "the server did not answer"."""
    # every drawing is too large
    stop, url = browser.serve(served_models_dir, max_body=100)
    driver = browser.start_browser()
    try:
        driver.get(url)
        browser.draw(driver, "1")
        status = WebDriverWait(driver, 20).until(
            lambda d: d.find_element("id", "status").text or None)
        assert status.startswith("the body has ") and status.endswith(
            "the limit is 100"
        )
    finally:
        driver.quit()
        stop()


def test_the_docs_page_works_offline(page):
    """/docs draws the API with Swagger UI served by the server itself: this machine's
    browser reaches no CDN, so a page that needed one would stay blank."""
    page.get(page.current_url.rstrip("/") + "/docs")
    title = WebDriverWait(page, 20).until(
        lambda d: d.find_elements("css selector", ".swagger-ui .info .title"))
    assert "digit reader" in title[0].text
    assert "/api/predict" in page.find_element("css selector", ".swagger-ui").text


def test_a_drawing_saved_with_its_label_lands_in_lesson_8s_folder(
    served_models_dir, tmp_path
):
    """Draw a 7, press "save as 7": a PNG appears in <folder>/7/, the pad is cleared,
    and the page says what the folder holds (issue 30's loop, started from the page)."""
    folder = tmp_path / "my_drawings"
    stop, url = browser.serve(served_models_dir, drawings=folder)
    driver = browser.start_browser()
    try:
        driver.get(url)
        browser.draw(driver, "7")
        browser.predictions(driver)
        driver.find_element("css selector", "#labels button[data-digit='7']").click()
        said = WebDriverWait(driver, 20).until(
            lambda d: "Saved as 7" in d.find_element("id", "saved").text
            and d.find_element("id", "saved").text)
        assert "my_drawings/ holds 1 drawing: 0: 0" in said and "7: 1" in said
        assert "python 08b_fine_tuning.py --folder data/my_drawings" in said
        assert len(list((folder / "7").glob("*.png"))) == 1
        # cleared for the next
        assert driver.find_elements("css selector", ".model") == []
    finally:
        driver.quit()
        stop()


def test_the_page_shows_lessons_11_and_12_beside_the_others(
    served_models_dir, tmp_path
):
    """Every checkpoint in the folder gets a card: lesson 11's SequenceRNN and lesson
    12's ViT included."""
    import shutil

    from conftest import lesson

    import dl_utils
    shutil.copy(served_models_dir / "mlp.pt", tmp_path / "mlp.pt")
    model = lesson("11_sequences_and_rnns").SequenceRNN("gru", 16)
    dl_utils.save_checkpoint(tmp_path / "sequence_gru.pt", model,
                             {"cell": "gru", "hidden_size": 16, "order": None})
    vit_kwargs = {"dim": 32, "depth": 1, "heads": 2, "mlp_size": 32}
    dl_utils.save_checkpoint(
        tmp_path / "vit.pt",
        lesson("12_attention_and_transformers").ViT(**vit_kwargs),
        vit_kwargs,
    )
    stop, url = browser.serve(tmp_path)
    driver = browser.start_browser()
    try:
        driver.get(url)
        browser.draw(driver, "1")
        shown = browser.predictions(driver)
        assert set(shown) == {f"{tmp_path.name}/{name}.pt"
                              for name in ("mlp", "sequence_gru", "vit")}, shown
        names = [e.text for e in driver.find_elements("css selector", ".model h2")]
        assert "SequenceRNN" in names and "ViT" in names
    finally:
        driver.quit()
        stop()
