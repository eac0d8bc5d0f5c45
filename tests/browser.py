"""Lesson 09's page in a real browser: headless Chromium driven by Selenium.

Used by tests/test_serve_browser.py, and on its own to take the README's screenshot:
    python tests/browser.py docs/09_page.png     # serves models/ and draws a digit
It needs the system's Chromium and its driver (Debian: apt-get install chromium
chromium-driver). Selenium is pointed at both, so it never tries to download a browser.
"""

import importlib
import math
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                 "google-chrome"))), None)
DRIVER = shutil.which("chromedriver")


def missing() -> str:
    """Why the browser test cannot run here ('' when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    if not (CHROMIUM and DRIVER):
        return ("no Chromium and chromedriver "
                "(Debian: apt-get install chromium chromium-driver)")
    return ""


def start_browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1250,900",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def serve(models_dir, **app_settings):
    """Lesson 9's server on a free port, in a thread; (stop, url): call stop() when
    done."""
    sys.path.insert(0, str(ROOT))
    lesson = importlib.import_module("09_serve_digits")
    serving = importlib.import_module("_course.serving")
    running = serving.running(lesson.make_app(lesson.load_models(models_dir, "cpu"),
                                              **app_settings))
    url = running.__enter__()
    return (lambda: running.__exit__(None, None, None)), url + "/"


def strokes(digit: str):
    """Pen paths for a digit, in pixels from the pad's centre: a list of strokes."""
    if digit == "1":
        return [[(0, -90), (0, 90)]]
    if digit == "0":
        return [
            [
                (
                    55 * math.sin(a / 20 * 2 * math.pi),
                    -85 * math.cos(a / 20 * 2 * math.pi),
                )
                for a in range(21)
            ]
        ]
    if digit == "7":
        return [[(-60, -80), (60, -80), (-10, 90)]]
    raise ValueError(digit)


def draw(driver, digit: str):
    """Draw with mouse events: press, move along the path, release; per stroke."""
    from selenium.webdriver.common.action_chains import ActionChains

    pad = driver.find_element("id", "pad")
    for path in strokes(digit):
        actions = ActionChains(driver, duration=20)
        actions.move_to_element_with_offset(pad, *map(round, path[0])).click_and_hold()
        for (x0, y0), (x1, y1) in zip(path, path[1:]):
            actions.move_by_offset(round(x1 - x0), round(y1 - y0))
        actions.release().perform()


def predictions(driver, timeout=20) -> dict:
    """{checkpoint: predicted digit} as the page shows them, once no request is pending.

    Read in one JavaScript call: the page re-draws its cards with every answer, so
    elements found one call earlier may already be gone.
    """
    from selenium.webdriver.support.ui import WebDriverWait

    read = ("if (window.dlBusy()) return null;"
            "const cards = document.querySelectorAll('.model');"
            "if (!cards.length) return null;"
            "return Object.fromEntries(Array.from(cards, c => "
            "[c.dataset.checkpoint, c.querySelector('.prediction').textContent]));")
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(read))


def clear(driver):
    driver.find_element("id", "clear").click()


def screenshot(path, models_dir, digit="7"):
    """Serve `models_dir`, draw `digit`, save a PNG of the page to `path`."""
    stop, url = serve(models_dir)
    driver = start_browser()
    try:
        driver.get(url)
        draw(driver, digit)
        found = predictions(driver)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(path))
        return found
    finally:
        driver.quit()
        stop()


if __name__ == "__main__":
    if missing():
        sys.exit(f"error: {missing()}")
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/09_page.png")
    print(screenshot(out, ROOT / "models"), "->", out)
