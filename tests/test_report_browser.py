"""The report page in a real browser (Debian's chromium, headless, driven by selenium),
opened from file:// at 1280x800: no console error, no request leaves the page, one
roofline mark per kernel, hovering a mark names its layers, a layer named like an HTML
injection stays text, and the page is not blank. Without chromium these tests skip
locally; under CI (``$CI`` set) they fail, since `.ci/run` installs it."""

from __future__ import annotations

import os
import shutil

import pytest

from test_report import EVIL, SHAPE, TINY, embedded

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _missing(why: str):
    if os.environ.get("CI"):
        pytest.fail(f"{why}: CI must run the browser tests (.ci/run installs chromium and chromium-driver)")
    pytest.skip(f"{why}: apt-get install chromium chromium-driver, pip install selenium")


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module, logging the console and the network, its
    viewport 1280x800."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed")
    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        _missing("no chromium or chromedriver on PATH")
    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def opened(browser, tmp_path_factory):
    """The tiny model's report, written by the command and opened from file://; the
    console and network logs of its loading."""
    import sys

    from deploylens.cli import main

    folder = tmp_path_factory.mktemp("browser")
    (folder / "tiny.py").write_text(TINY)
    page = folder / "report.html"
    argv = sys.argv
    sys.argv = ["deploylens", "report", f"{folder / 'tiny.py'}:build", "--target", "nvidia_t4", "-i", SHAPE,
                "-o", str(page)]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = argv
    assert exit_info.value.code in (0, None)
    browser.get_log("browser"), browser.get_log("performance")  # only this page's entries from here
    browser.get(page.as_uri())
    return {"url": page.as_uri(), "html": page.read_text(), "console": browser.get_log("browser"),
            "network": browser.get_log("performance")}


def test_no_console_error_and_no_request_leaves_the_page(opened):
    assert [entry for entry in opened["console"] if entry["level"] == "SEVERE"] == []
    import json

    requested = {json.loads(entry["message"])["message"]["params"]["request"]["url"]
                 for entry in opened["network"]
                 if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"}
    assert requested == {opened["url"]}


def test_the_roofline_has_one_mark_per_fused_kernel(browser, opened):
    from selenium.webdriver.common.by import By

    marks = browser.find_elements(By.CSS_SELECTOR, "svg.roofline circle.mark")
    kernels = embedded(opened["html"])["models"][0]["analyze"]["kernels"]
    assert len(marks) == len(kernels) > 3
    assert all(mark.is_displayed() for mark in marks)


def test_hovering_a_mark_names_its_layers_as_text(browser, opened):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    layers_of = {k["name"]: k["layers"] for k in embedded(opened["html"])["models"][0]["analyze"]["kernels"]}
    tip = browser.find_element(By.ID, "tip")
    assert not tip.is_displayed()
    named = set()
    for mark in browser.find_elements(By.CSS_SELECTOR, "svg.roofline circle.mark"):
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", mark)
        ActionChains(browser).move_to_element(mark).perform()
        assert tip.is_displayed()
        kernel = tip.text.splitlines()[0]
        named.add(kernel)
        assert all(layer in tip.text for layer in layers_of.get(kernel, [kernel])), tip.text
    assert EVIL in named and EVIL in browser.find_element(By.TAG_NAME, "body").text
    assert browser.find_elements(By.TAG_NAME, "img") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text


def test_the_page_is_drawn_at_1280x800(browser, opened):
    """The viewport's screenshot has ink: more than 2% of its pixels are not background."""
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.execute_script("return [window.innerWidth, window.innerHeight]") == [1280, 800]
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1280  # no sideways scrolling
    shot = browser.get_screenshot_as_base64()
    browser.get("about:blank")  # the report's policy loads no image; a blank page counts the pixels
    try:
        inked = _inked_pixels(browser, shot)
    finally:
        browser.get(opened["url"])
    assert inked[1] == 1280 * 800 and inked[0] > 0.02 * inked[1]


def _inked_pixels(browser, png_base64: str) -> list[int]:
    """(pixels darker than near-white, all pixels) of a PNG, counted in the browser."""
    return browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const image = new Image();
        image.onload = () => {
          const canvas = document.createElement("canvas");
          canvas.width = image.width; canvas.height = image.height;
          const context = canvas.getContext("2d");
          context.drawImage(image, 0, 0);
          const pixels = context.getImageData(0, 0, image.width, image.height).data;
          let ink = 0;
          for (let i = 0; i < pixels.length; i += 4) {
            if (pixels[i] < 235 || pixels[i + 1] < 235 || pixels[i + 2] < 235) { ink += 1; }
          }
          done([ink, image.width * image.height]);
        };
        image.src = "data:image/png;base64," + arguments[0];
    """, png_base64)
