"""rnnlab explore in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium).

Starts ``rnnlab explore`` on small models trained here, loads the page with no console errors, types text and
sees the heat map change, selects a span and gets ranked units and matches, uses the statistics, predictions,
sampling and gradient views, opens the attention view of a small seq2seq model, and saves screenshots (to
pytest's tmp dir, or to ``$RNNLAB_EXPLORE_SCREENSHOTS`` when set). Skips with the reason when Selenium or the
browser is missing: ``apt-get install chromium chromium-driver`` and ``pip install selenium`` (in the test extra).
"""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from rnnlab.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
TEXT = ('He said "yes" and she said "no", then "maybe" and left.\n'
        'The (small) dog ran; the "big" cat sat on the mat.\n') * 30


def _need_browser():
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("browser test: the selenium package is not installed (pip install selenium; it is in the "
                    "'test' extra)")
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("browser test: no Chromium on this machine (Debian: apt-get install chromium chromium-driver; "
                    f"found chromium={CHROMIUM}, chromedriver={DRIVER})")


@pytest.fixture
def driver():
    _need_browser()
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,1700", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        d = webdriver.Chrome(options=opts, service=Service(executable_path=DRIVER))
    except WebDriverException as e:
        pytest.skip(f"browser test: Chromium is installed but did not start under chromedriver: {e.msg}")
    d.set_script_timeout(30)
    yield d
    d.quit()


def _shots_dir(tmp_path):
    d = os.environ.get("RNNLAB_EXPLORE_SCREENSHOTS")
    if d:
        os.makedirs(d, exist_ok=True)
        return d
    return str(tmp_path)


class _Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "rnnlab", "explore", *args, "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "http://127.0.0.1:" not in line:
            self.proc.kill()
            raise AssertionError(f"rnnlab explore did not start: {line}{self.proc.stderr.read()}")
        self.url = "http://127.0.0.1:" + line.split("http://127.0.0.1:")[1].split("/")[0] + "/"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def _wait(driver, cond, what, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = driver.execute_script(cond)
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; page errors: "
                         f"{driver.find_element('id', 'errors').text!r}; console: {_console(driver)}")


def _console(driver):
    return [e for e in driver.get_log("browser")]


def _severe(logs):
    return [e for e in logs if e.get("level") == "SEVERE"]


def _heat(driver):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#heatmap .tok')).map(s => [s.textContent, s.style.backgroundColor]);")


def _set_text(driver, text):
    """Set the text box as a paste does (one input event) and wait for the page to render it."""
    n = driver.execute_script("return window.__renderCount || 0;")
    driver.execute_script("const t = document.getElementById('text'); t.value = arguments[0];"
                          "t.dispatchEvent(new Event('input'));", text)
    # the page may still be finishing a trace of the previous text: wait for the render of this one
    _wait(driver, f"return (window.__renderCount || 0) > {n} && window.__renderedText === {json.dumps(text)};",
          "the heat map of the new text to render")


def test_explore_charlm_page_in_chromium(driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    assert main(["train", "charlm", "--text", str(text), "--epochs", "3", "--units", "24", "--embedding-dim", "8",
                 "--batch-size", "4", "--bptt", "32", "--lr", "0.02", "--verbose", "0", "--out",
                 str(tmp_path / "run")]) == 0
    srv = _Server(str(tmp_path / "run" / "model.npz"), "--text", str(text))
    shots = _shots_dir(tmp_path)
    try:
        driver.get(srv.url)
        _wait(driver, "return document.body.dataset.ready === '1';", "the page to load")
        _wait(driver, "return document.querySelectorAll('#heatmap .tok').length > 0;", "the first heat map")
        _wait(driver, "return document.body.dataset.corpusReady === '1';", "--text to be processed")
        assert "processed" in driver.find_element(By.ID, "progress-text").text
        assert "charlm model" in driver.find_element(By.ID, "model-info").text

        # type text: the heat map shows it, coloured by the chosen unit; another unit colours it differently
        box = driver.find_element(By.ID, "text")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
        n = driver.execute_script("return window.__renderCount || 0;")
        typed = 'She said "never" to him.'
        box.send_keys(typed)
        _wait(driver, "return Array.from(document.querySelectorAll('#heatmap .tok')).map(s => s.textContent)"
                      f".join('') === {json.dumps(typed)} && (window.__renderCount || 0) > {n};",
              "the heat map of the typed text")
        heat0 = _heat(driver)
        assert [c for c, _ in heat0] == list(typed)
        assert len({bg for _, bg in heat0}) > 3            # coloured by value, not one flat colour
        unit = driver.find_element(By.ID, "unit")
        n = driver.execute_script("return window.__renderCount;")
        unit.send_keys(Keys.ARROW_UP)                      # unit 0 -> 1
        _wait(driver, f"return window.__renderCount > {n} && document.getElementById('heatmap').dataset.unit === '1';",
              "the heat map of unit 1")
        heat1 = _heat(driver)
        assert [c for c, _ in heat1] == list(typed) and [bg for _, bg in heat1] != [bg for _, bg in heat0]
        assert driver.execute_script("return document.querySelectorAll('#chart polyline').length;") == 1

        # select a span with the mouse-selection API and match it: ranked units and matches in the corpus
        _set_text(driver, 'He said "yes" and she said "no".')
        driver.execute_script("""
            const toks = document.querySelectorAll('#heatmap .tok');
            const r = document.createRange();
            r.setStart(toks[9].firstChild, 0); r.setEnd(toks[11].firstChild, 1);
            const s = window.getSelection(); s.removeAllRanges(); s.addRange(r);""")
        n_units = driver.find_element(By.ID, "n-units")   # using a control clears the selection: the page keeps it
        n_units.clear()
        n_units.send_keys("2")
        driver.find_element(By.ID, "match").click()
        _wait(driver, "return document.querySelectorAll('#ranked tr').length > 1;", "the ranked units")
        rows = driver.find_elements(By.CSS_SELECTOR, "#ranked tr")
        assert len(rows) == 21 and rows[1].get_attribute("class") == "chosen"
        assert 1 <= len(driver.find_elements(By.CSS_SELECTOR, "#ranked tr.chosen")) <= 2
        _wait(driver, "return document.querySelectorAll('#matches li').length > 0;", "the matches")
        info = driver.find_element(By.ID, "selection-info").text
        assert 'selection "yes"' in info and "matches in the corpus" in info
        assert driver.find_elements(By.CSS_SELECTOR, "#matches li .m")[0].text

        # gate statistics, predictions, sampling, gradients
        driver.find_element(By.ID, "stats-btn").click()
        _wait(driver, "return document.querySelectorAll('#stats figure').length === 3;", "the i/f/o statistics")
        driver.find_elements(By.CSS_SELECTOR, "#heatmap .tok")[3].click()
        _wait(driver, "return document.querySelectorAll('#topk .p').length === 5;", "the top-5 predictions")
        driver.find_element(By.ID, "seed").send_keys("He said")
        driver.find_element(By.ID, "sample-btn").click()
        _wait(driver, "const o = document.getElementById('sample-out'); return o.querySelector('b') && "
                      "o.textContent.length > 50;", "a sample")
        driver.find_element(By.ID, "grad-last").click()                 # loss on the last step only
        driver.find_element(By.ID, "grad-btn").click()
        _wait(driver, "return document.querySelectorAll('#grad-chart polyline').length === 1;", "the gradient norms")
        driver.execute_script("window.scrollTo(0, 0);")
        driver.save_screenshot(os.path.join(shots, "explore_charlm.png"))

        # a 2,000-character text: request + render time as the page measures it (reported, not asserted)
        _set_text(driver, TEXT[:2000])
        assert len(_heat(driver)) == 2000
        ms = driver.execute_script("return window.__lastRenderMs;")
        print(f"\n2,000 characters, LSTM(24): request + render {ms:.0f} ms")

        errors = _severe(_console(driver))
        assert errors == [], errors
    finally:
        srv.stop()


def test_explore_seq2seq_attention_in_chromium(driver, tmp_path):
    from selenium.webdriver.common.by import By

    words = ["abc", "bca", "cab", "aab", "bba", "ccb", "acb", "bac", "cba", "abb", "bcc", "caa"] * 5
    pairs = tmp_path / "rev.tsv"
    pairs.write_text("".join(f"{w}\t{w[::-1]}\n" for w in words), encoding="utf-8")
    assert main(["train", "seq2seq", "--pairs", str(pairs), "--epochs", "2", "--units", "8", "--embedding-dim", "4",
                 "--attention", "general", "--out", str(tmp_path / "s2s"), "--verbose", "0"]) == 0
    srv = _Server(str(tmp_path / "s2s" / "model.npz"))
    try:
        driver.get(srv.url)
        _wait(driver, "return document.body.dataset.ready === '1';", "the page to load")
        assert driver.find_element(By.ID, "view-attention").is_displayed()
        assert not driver.find_element(By.ID, "view-predict").is_displayed()
        inp = driver.find_element(By.ID, "att-text")
        inp.send_keys("bca")   # the longest training source has 3 characters
        driver.find_element(By.ID, "att-btn").click()
        _wait(driver, "return document.querySelectorAll('#att-map rect.att-cell').length > 0;", "the attention map")
        n_out = driver.execute_script("return document.querySelectorAll('#att-map rect.att-cell').length;")
        assert n_out % 3 == 0 and n_out >= 3               # (output tokens incl. <end>) x 3 source characters
        assert driver.find_element(By.ID, "att-out").text.startswith('"bca" →')
        # the encoder's states in view 1, and the gradient norms of a typed target
        _set_text(driver, "abc")
        assert [c for c, _ in _heat(driver)] == ["a", "b", "c"]
        driver.find_element(By.ID, "grad-text").send_keys("cba")
        driver.find_element(By.ID, "grad-btn").click()
        # the default bidirectional encoder: its two directions and the decoder
        _wait(driver, "return document.querySelectorAll('#grad-chart polyline').length === 3;",
              "the encoder's (both directions) and the decoder's gradient norms")
        assert "backward_encoder_0 (LSTM 8, reads right to left)" in driver.find_element(By.ID, "model-info").text
        driver.find_element(By.ID, "view-attention").screenshot(os.path.join(_shots_dir(tmp_path),
                                                                              "explore_seq2seq_attention.png"))
        assert _severe(_console(driver)) == []
    finally:
        srv.stop()


def _train_other(kind, tmp_path):
    if kind == "wordlm":
        lines = "the cat sat on the mat\na dog ran to the house\n" * 30
        (tmp_path / "tr.txt").write_text(lines, encoding="utf-8")
        (tmp_path / "va.txt").write_text(lines[:200], encoding="utf-8")
        args = ["train", "wordlm", "--train", str(tmp_path / "tr.txt"), "--valid", str(tmp_path / "va.txt"),
                "--units", "8", "--embedding-dim", "8", "--batch-size", "4", "--bptt", "10", "--eval-batch-size", "2"]
        return args, "the cat sat on the mat\na dog"
    if kind == "classify":
        sys.path.insert(0, os.path.dirname(__file__))
        from test_cli_classify import write_data

        args = ["train", "classify", "--data", write_data(tmp_path / "d.csv"), "--units", "8", "--embedding-dim", "8",
                "--batch-size", "16"]
        return args, "a great superb film and the plot"
    from rnnlab.datasets.conll import generate_two_sided_tagging, write_conll

    f = write_conll(generate_two_sided_tagging(60, seed=0), str(tmp_path / "t.conll"))
    return ["train", "tag", "--train", f, "--valid", f, "--units", "8", "--embedding-dim", "8"], "mr alba said kell corp"


@pytest.mark.parametrize("kind", ["wordlm", "classify", "tag"])
def test_explore_word_models_in_chromium(driver, tmp_path, kind):
    from selenium.webdriver.common.by import By

    args, text = _train_other(kind, tmp_path)
    assert main(args + ["--epochs", "1", "--verbose", "0", "--out", str(tmp_path / "run")]) == 0
    srv = _Server(str(tmp_path / "run" / "model.npz"))
    try:
        driver.get(srv.url)
        _wait(driver, "return document.body.dataset.ready === '1';", "the page to load")
        assert f"{kind} model" in driver.find_element(By.ID, "model-info").text
        _set_text(driver, text)
        words = [w for w, _ in _heat(driver)]
        if kind == "wordlm":
            assert words == ["the", "cat", "sat", "on", "the", "mat", "<eos>", "a", "dog"]
        else:
            assert words == text.split()
        outputs = driver.find_element(By.ID, "outputs").text
        if kind == "classify":
            assert outputs.startswith("output: ") and "positive" in outputs and "negative" in outputs
        if kind == "tag":
            assert outputs.startswith("tags: mr/")
        assert driver.find_element(By.ID, "view-predict").is_displayed() == (kind == "wordlm")
        assert driver.find_element(By.ID, "view-gradients").is_displayed()
        assert driver.find_element(By.ID, "grad-label").is_displayed() == (kind == "classify")
        assert driver.find_element(By.ID, "grad-text").is_displayed() == (kind == "tag")   # empty: predicted tags
        driver.find_element(By.ID, "grad-btn").click()
        _wait(driver, "return document.querySelectorAll('#grad-chart polyline').length >= 1;", "the gradient norms")
        info = json.loads(urllib.request.urlopen(srv.url + "api/info", timeout=10).read())
        n_gates = sum(len(layer["gates"]) for layer in info["layers"])
        assert n_gates >= 2
        driver.find_element(By.ID, "stats-btn").click()
        _wait(driver, f"return document.querySelectorAll('#stats figure').length === {n_gates};", "the gate statistics")
        assert driver.find_element(By.ID, "errors").text == ""
        assert _severe(_console(driver)) == []
    finally:
        srv.stop()
