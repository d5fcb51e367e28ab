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


# ---- what a run with every kind of sample shows -------------------------------------------------------------
LONG = "Triangle" + "O" * 2000  # a degenerate answer running to the token cap, with no place to break


class Counting:
    """Answers "3" to counting questions (full VQA credit where most annotators said 3, partial where some did)
    and a 2,000-character unbroken answer to everything else."""

    def generate(self, requests):
        return ["3" if "How many" in r.messages[-1].text else LONG for r in requests]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A run with partial VQA credit (vqav2_val), answers nobody judged (llava_bench, whose doc ids 0, 1, ... are
    vqav2_val's too), a split only the server scores (vizwiz_test) and a plain task (pope); the table it printed."""
    if BROWSER is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    out = tmp_path_factory.mktemp("mixed") / "run"
    printed = []
    run(Counting(), ["vqav2_val", "llava_bench", "vizwiz_test", "pope"], out, model_id="counting", limit=6,
        batch_size=6, echo=printed.append, model_fp="c", progress=False)
    return out, write_report(out), printed


PROBE = """<script>
document.body.insertAdjacentHTML("beforeend", "<pre id=probe></pre>");
var root = document.documentElement;
document.getElementById("probe").textContent = JSON.stringify({
  scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
  ids: Array.from(document.querySelectorAll("[id]"), function (e) { return e.id; }),
  samples: Array.from(document.querySelectorAll("tr.sample"), function (r) {
    return {id: r.id, task: r.closest("section").id, state: r.className.split(" ")[1],
            hidden: r.style.display === "none", score: r.querySelector("td.score").textContent}; }),
  summary: Array.from(document.querySelectorAll("#summary tbody tr"), function (r) {
    return Array.from(r.cells, function (c) { return c.textContent.trim(); }); })});
</script></body>"""


def _probe(path, tmp_path, fragment=""):
    """The rendered page measured in a 1385 px wide window: its widths, every element id, each sample row's
    state, visibility and score cell, and the summary cells (the probe script runs after the page's own)."""
    probed = tmp_path / "probed.html"
    probed.write_text(path.read_text(encoding="utf-8").replace("</body>", PROBE), encoding="utf-8")
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1385,900",
           "--virtual-time-budget=3000", "--dump-dom", probed.as_uri() + fragment]
    html = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', html, re.S)
    import html as entities

    return json.loads(entities.unescape(found.group(1)))


def test_a_long_unbroken_answer_does_not_widen_the_page(mixed, tmp_path):
    _, path, _ = mixed
    assert LONG in path.read_text()  # shown in full, wrapped
    page = _probe(path, tmp_path)
    assert page["scrollWidth"] <= page["clientWidth"] + 2, page


def test_unjudged_answers_say_not_judged_and_are_not_failures(mixed, tmp_path):
    _, path, _ = mixed
    page, filtered = _probe(path, tmp_path), _probe(path, tmp_path, "#failures")
    bench = [s for s in page["samples"] if s["task"] == "task-llava_bench"]
    assert len(bench) == 6 and all(s["state"] == "unjudged" and s["score"] == "not judged" for s in bench)
    assert all(s["hidden"] for s in filtered["samples"] if s["task"] == "task-llava_bench")


def test_partial_vqa_credit_is_its_own_state_not_a_failure(mixed, tmp_path):
    out, path, _ = mixed
    items = {str(x["question_id"]): x["score"] for x in map(json.loads, (out / "vqav2_val" / "items.jsonl").open())}
    assert any(0 < score < 1 for score in items.values())  # the fixture really has partial credit
    page, filtered = _probe(path, tmp_path), _probe(path, tmp_path, "#failures")
    vqa = {s["id"].removeprefix("vqav2_val-"): s for s in page["samples"] if s["task"] == "task-vqav2_val"}
    assert {k: s["state"] for k, s in vqa.items()} == {
        k: "pass" if v == 1 else "partial" if v > 0 else "fail" for k, v in items.items()}
    hidden = {s["id"]: s["hidden"] for s in filtered["samples"]}
    assert all(hidden[s["id"]] == (s["state"] != "fail") for s in vqa.values())
    assert any(s["state"] == "fail" for s in vqa.values())


def test_element_ids_are_unique_across_tasks(mixed, tmp_path):
    _, path, _ = mixed
    page = _probe(path, tmp_path)
    assert len(page["ids"]) == len(set(page["ids"]))
    ids = {s["id"] for s in page["samples"]}
    assert {"vqav2_val-0", "llava_bench-0"} <= ids  # the same doc id in two tasks: two anchors
    assert all(s["id"].startswith(s["task"].removeprefix("task-") + "-") for s in page["samples"])


def test_summary_shows_what_the_run_printed(mixed, tmp_path):
    _, path, printed = mixed
    lines = {line.split()[0]: line for line in printed}
    rows = {cells[0]: cells for cells in _probe(path, tmp_path)["summary"]}
    assert set(rows) == set(lines) == {"vqav2_val", "llava_bench", "vizwiz_test", "pope"}
    for task, cells in rows.items():
        value, interval = cells[2], cells[3]
        assert f"{value} {interval}".strip() in lines[task], (cells, lines[task])
    assert rows["vizwiz_test"][2] == "n/a (server/judge)" and rows["vizwiz_test"][8] == ""  # no paper delta
    assert rows["llava_bench"][2] == "n/a (server/judge)"


def test_a_synthetic_run_is_labelled_as_such(mixed, tmp_path):
    _, path, _ = mixed
    html = _dom(path)
    assert 'id="synthetic-banner"' in html and "not comparable with the paper" in html
    assert "(synthetic data)" in html
