"""The explorer page in a real headless Chromium (Debian's chromium and chromium-driver, driven by Selenium):
served by ``scratchrnn serve`` it loads without a console error, streams a continuation and draws every
view; written by ``scratchrnn explain`` it opens from disk with the network cut off and draws them too."""
import json
import os

import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from serve_helpers import ServerThread, run_cli, train_run  # noqa: E402

from scratchrnn.serving.app import create_app  # noqa: E402
from scratchrnn.serving.served import ServedRun  # noqa: E402

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"

if not os.path.exists(CHROMEDRIVER):
    pytest.skip(f"no {CHROMEDRIVER}: make test installs Debian's chromium-driver", allow_module_level=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_run(tmp_path_factory)


@pytest.fixture(scope="module")
def server(run):
    srv = ServerThread(create_app(ServedRun.load(run)))
    yield srv
    srv.stop()


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _wait(driver, script, timeout=60):
    """Wait until a JavaScript expression is true in the page."""
    WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(f"return {script};"))


def _check_every_view_draws(driver, gates: bool):
    count = lambda css: len(driver.find_elements(By.CSS_SELECTOR, css))       # noqa: E731
    text = driver.execute_script("return explorer.analysis.text")
    assert count("#surprise-text span") == len(text) == count("#unit-text span") > 0
    assert count("#candidates svg rect") == 5                                 # the five likeliest
    assert count("#saliency svg rect") >= 2 and count("#gradnorm svg path.series") >= 1
    assert count("#curves svg path.series") >= 1
    assert count("#feature-table tbody a") >= 3
    painted = driver.execute_script(
        "const c = document.getElementById('units-canvas');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] && (d[i] < 250 || d[i + 1] < 250)) n++;"
        "return [n, c.width * c.height];")
    assert painted[1] > 0 and painted[0] > painted[1] / 4, painted
    if gates:
        assert count("#gates svg") == 3 and count("#gates svg circle") == 3 * 24    # i, f, o per unit


def test_the_page_loads_streams_a_continuation_and_draws_every_view(server, browser):
    browser.get(server.url + "/")
    _wait(browser, "explorer.analysis !== null && document.querySelectorAll('#gradnorm path.series').length > 0")
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys('"Hello," she')
    tokens = browser.find_element(By.ID, "max-tokens")
    tokens.clear()
    tokens.send_keys("60")
    browser.find_element(By.ID, "generate-button").click()
    _wait(browser, "document.getElementById('generate-status').textContent === ''"
                   " && explorer.analysis.text.length === 72")
    # (textContent: Selenium's .text trims the white space a sampled text may begin or end with)
    assert browser.execute_script("return document.getElementById('completion-text').textContent.length") == 60
    _check_every_view_draws(browser, gates=True)
    # choosing a character explains its prediction
    browser.find_elements(By.CSS_SELECTOR, "#surprise-text span")[9].click()
    _wait(browser, "document.getElementById('saliency-title').textContent.includes('after position 9')")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#saliency svg rect")) == 10     # a bar per character
    assert _console_errors(browser) == []


def test_the_explain_file_opens_without_network_and_draws_every_view(run, browser, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text('He looked (briefly) at it and said: "Where?"\nThe traveller smiled.\n', encoding="utf-8")
    out = tmp_path / "explain.html"
    proc = run_cli("explain", run, "--text", text, "--html", out)
    assert proc.returncode == 0, proc.stderr
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["http://*", "https://*", "ws://*", "wss://*"]})
    browser.get(out.as_uri())
    _wait(browser, "explorer.analysis !== null && document.querySelectorAll('#gradnorm path.series').length > 0")
    _check_every_view_draws(browser, gates=True)
    assert not browser.find_element(By.ID, "generate").is_displayed()
    browser.find_elements(By.CSS_SELECTOR, "#unit-text span")[20].click()       # answered from the file itself
    _wait(browser, "document.getElementById('saliency-title').textContent.includes('after position 20')")
    requested = [json.loads(entry["message"])["message"]["params"]["request"]["url"]
                 for entry in browser.get_log("performance")
                 if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"]
    assert requested and all(url.startswith(("file:", "data:")) for url in requested), requested
    assert _console_errors(browser) == []
