"""The HTML report as a person sees it: loaded in headless Chromium (Debian's `chromium`), scripts run, then
the rendered DOM and a screenshot are checked. CI installs chromium first and sets LLAVA_EVAL_REQUIRE_BROWSER,
so there the test cannot skip."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from PIL import Image

from llava_eval.report import write_report
from llava_eval.runner import run

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


class Model:
    """Alternates a right-looking and a hostile answer, so both pass and fail rows and escaping are exercised."""

    answers = ("Yes", "No", "A", "<b>bold</b> & no")

    def __init__(self):
        self.calls = 0

    def generate(self, requests):
        self.calls += len(requests)
        return [self.answers[(self.calls + i) % 4] for i in range(len(requests))]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if BROWSER is None:
        if os.environ.get("LLAVA_EVAL_REQUIRE_BROWSER"):
            pytest.fail("chromium is required here (LLAVA_EVAL_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("chromium not installed (apt-get install chromium)")
    out = tmp_path_factory.mktemp("run")
    run(Model(), ["pope", "scienceqa_img"], out, model_id="fake-model", limit=24, batch_size=4,
        echo=lambda *_: None, model_fp="fp", progress=False)
    return out, write_report(out)


def _dom(path, fragment=""):
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000", "--dump-dom",
           path.as_uri() + fragment]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


class Rows(HTMLParser):
    """Sample rows (class, style) and the text of the summary table cells."""

    def __init__(self):
        super().__init__()
        self.samples, self.summary, self.images, self._cell, self._in_summary = [], [], 0, None, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "summary":
            self._in_summary = True
        if tag == "tr" and "sample" in (a.get("class") or ""):
            self.samples.append((a["class"], a.get("style") or ""))
        if tag == "img" and (a.get("src") or "").startswith("data:image/jpeg;base64,"):
            self.images += 1
        if self._in_summary and tag == "td":
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_summary = False
        if tag == "td" and self._cell is not None:
            self.summary.append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _parse(html):
    p = Rows()
    p.feed(html)
    return p


def test_summary_shows_each_metric_with_its_interval_and_paper_delta(report):
    out, path = report
    cells = _parse(_dom(path)).summary
    for task in ("pope", "scienceqa_img"):
        m = json.loads((out / task / "metrics.json").read_text())["metrics"]
        metric = {"pope": "f1", "scienceqa_img": "accuracy"}[task]
        i = cells.index(task)
        assert cells[i + 1] == metric and cells[i + 2] == f"{m[metric]:.2f}"
        assert cells[i + 3] == f"[{m['ci95']['low']:.2f}, {m['ci95']['high']:.2f}]"
    pope = cells.index("pope")
    paper_7b = 85.9
    assert cells[pope + 7] == "85.9" and cells[pope + 8] == f"{float(cells[pope + 2]) - paper_7b:+.2f}"


def test_every_sample_is_listed_with_its_thumbnail_failures_first(report):
    out, path = report
    page = _parse(_dom(path))
    assert len(page.samples) == 48 and page.images == 48
    assert all(style == "" for _, style in page.samples)  # unfiltered: all visible
    kinds = [c.split()[1] for c, _ in page.samples]
    pope = kinds[:24]
    assert pope == sorted(pope)  # "fail" sorts before "pass": failures first
    items = [json.loads(x) for x in (out / "pope" / "items.jsonl").read_text().splitlines()]
    assert pope.count("fail") == sum(1 for it in items if it["score"] is None or it["score"] < 1)


def test_failures_filter_hides_passing_rows(report):
    _, path = report
    html = _dom(path, "#failures")
    page = _parse(html)
    visible = [c for c, style in page.samples if "display: none" not in style]
    assert visible and all("fail" in c for c in visible)
    assert len(visible) < len(page.samples)
    assert re.search(rf">{len(visible)} samples shown<", html)


def test_model_output_is_shown_as_text_not_markup(report):
    _, path = report
    html = _dom(path)
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; no" in html and "<b>bold</b>" not in html


def test_page_renders_something_visible(report, tmp_path):
    _, path = report
    shot = tmp_path / "shot.png"
    subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,900",
                    f"--screenshot={shot}", path.as_uri()], capture_output=True, timeout=120, check=True)
    image = Image.open(shot).convert("L")
    lo, hi = image.getextrema()
    assert image.size == (1200, 900) and hi - lo > 100  # text on a background, not a blank page
