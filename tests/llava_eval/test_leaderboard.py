"""Leaderboard CSV/Markdown/plot and `compare` from the command line, on runs made with scripted models."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from leaderboards import PAPER
from llava_eval.cli import main
from llava_eval.leaderboard import BENCHMARKS
from llava_eval.runner import run


class Constant:
    def __init__(self, answer):
        self.answer = answer

    def generate(self, requests):
        return [self.answer] * len(requests)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name, answer in (("yes", "Yes"), ("no", "No")):
        out[name] = base / name
        run(Constant(answer), ["pope", "mme", "scienceqa_img"], out[name], model_id=f"always-{name}", limit=60,
            batch_size=8, echo=lambda *_: None, model_fp=name, progress=False)
    return out


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_paper_csv_has_the_published_numbers():
    rows = {r["Method"]: r for r in csv.DictReader(PAPER.open())}
    assert list(rows) == ["LLaVA-1.5-7B", "LLaVA-1.5-13B", "LLaVA-1.5-7B-LoRA", "LLaVA-1.5-13B-LoRA",
                          "LLaVA-1.5-13B-HD", "LLaVA-7B (v1)", "BLIP-2", "InstructBLIP-7B", "InstructBLIP-13B",
                          "Qwen-VL", "Qwen-VL-Chat"]
    assert [rows["LLaVA-1.5-13B"][c] for c in BENCHMARKS] == [
        "80.0", "63.3", "53.6", "71.6", "61.3", "85.9", "1531.3", "67.7", "63.6", "61.6", "68.2", "72.5", "36.1"]
    assert rows["LLaVA-1.5-7B"]["MME"] == "1510.7" and rows["LLaVA-1.5-7B"]["MM-Vet"] == "31.1"
    # SEED is all questions (MODEL_ZOO), SEED-IMG the image questions (the CVPR paper's Table 4)
    assert (rows["LLaVA-1.5-7B"]["SEED"], rows["LLaVA-1.5-7B"]["SEED-IMG"]) == ("58.6", "66.1")
    # single POPE columns are the mean of the paper's three per-split F1 scores
    assert float(rows["BLIP-2"]["POPE"]) == pytest.approx((89.6 + 85.5 + 80.9) / 3, abs=0.05)
    assert float(rows["LLaVA-1.5-13B-HD"]["POPE"]) == pytest.approx((87.5 + 86.4 + 85.0) / 3, abs=0.05)
    assert all(r["source"] for r in rows.values())


def test_leaderboard_rows_in_paper_order_with_empty_missing(runs, tmp_path):
    out = tmp_path / "lb.csv"
    result = cli("leaderboard", runs["yes"], runs["no"], "--out", out, "--with-paper", "--markdown",
                 tmp_path / "lb.md", "--plot", tmp_path / "lb.png")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns[:len(BENCHMARKS) + 1]) == ["Method"] + BENCHMARKS
    assert list(frame["Method"][:2]) == ["always-yes", "always-no"] and len(frame) == 13
    yes = frame.iloc[0]
    metrics = json.loads((runs["yes"] / "pope" / "metrics.json").read_text())["metrics"]
    assert yes["POPE"] == pytest.approx(round(metrics["f1"], 2))
    assert pd.isna(yes["GQA"]) and pd.isna(yes["LLaVA-W"])  # not run: empty, not zero
    assert yes["columns_from"] == "SQA-IMG=scienceqa_img;POPE=pope;MME=mme"
    assert frame.iloc[1]["POPE"] == 0.0  # always "no": F1 is a real zero, and it shows as one
    assert "| always-yes" in (tmp_path / "lb.md").read_text()
    assert (tmp_path / "lb.png").read_bytes()[:4] == b"\x89PNG"


def test_leaderboard_refuses_a_folder_that_is_not_a_run(tmp_path):
    result = cli("leaderboard", tmp_path, "--out", tmp_path / "x.csv")
    assert result.exit_code == 2 and "not a finished run directory" in result.output


def test_a_damaged_results_file_is_one_error_naming_it(runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["yes"], run)
    (run / "results.json").write_text('{"pope": {"task": "po')  # cut off by a full disk
    result = cli("leaderboard", run, "--out", tmp_path / "x.csv")
    assert result.exit_code == 2 and result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "results.json: not valid JSON" in result.output


def test_compare_reports_paired_tests(runs, tmp_path):
    result = cli("compare", runs["yes"], runs["no"], "--csv", tmp_path / "c.csv")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "c.csv").set_index("task")
    assert set(table.index) == {"pope", "mme", "scienceqa_img"}
    # always-yes vs always-no on balanced yes/no questions: every item flips, half each way
    assert table.loc["pope", "a_only_right"] == table.loc["pope", "b_only_right"] == 30
    assert table.loc["pope", "p_mcnemar"] == pytest.approx(1.0)
    # ...yet F1 drops from 66.7 to 0: the verdict follows the metric's own paired bootstrap, not McNemar
    assert table.loc["pope", "diff"] == pytest.approx(-66.67, abs=0.01)
    assert table.loc["pope", "test"] == "paired bootstrap" and table.loc["pope", "verdict"] == "significant"
    assert table.loc["scienceqa_img", "test"] == "mcnemar"
    same = cli("compare", runs["yes"], runs["yes"])
    assert "not significant" in same.output and "+0.00" in same.output


def test_rows_say_how_the_model_was_prompted(runs, tmp_path):
    """A LLaVA-family run is prompted with the paper's template; another family's (its own chat template with
    the paper's question text, recorded as prompt_mode) is labelled so in the leaderboard and the report."""
    import shutil

    from llava_eval.leaderboard import run_row
    from llava_eval.report import write_report

    other = tmp_path / "other"
    shutil.copytree(runs["yes"], other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(config | {"prompt_mode": "model template"}))
    assert run_row(runs["yes"])["prompts"] == "paper"
    assert run_row(other)["prompts"] == "paper prompts, model template"
    assert '<span id="prompts">paper prompts, model template</span>' in write_report(other).read_text()


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    """The paper's splits as the `llava-1.5` suite runs them: VQAv2 test-dev and VizWiz test are answered but only
    the evaluation server scores them; SEED on its image questions. The model id is a checkpoint path."""
    out = tmp_path_factory.mktemp("suite") / "run"
    run(Constant("Yes"), ["vqav2_testdev", "vizwiz_test", "seed_image", "pope"], out,
        model_id="/home/someone/checkpoints/my-llava", limit=8, batch_size=8, echo=lambda *_: None, model_fp="s",
        progress=False)
    return out


def test_answers_only_a_server_scores_leave_their_column_empty_and_say_why(suite_run, tmp_path):
    result = cli("leaderboard", suite_run, "--out", tmp_path / "lb.csv", "--markdown", tmp_path / "lb.md")
    assert result.exit_code == 0, result.output
    row = pd.read_csv(tmp_path / "lb.csv").iloc[0]
    metrics = json.loads((suite_run / "vqav2_testdev" / "metrics.json").read_text())["metrics"]
    assert metrics["accuracy"] > 0  # the synthetic rows carry answers, yet the split is the server's
    assert pd.isna(row["VQAv2"]) and pd.isna(row["VizWiz"])
    assert row["unscored"] == "VQAv2=vqav2_testdev:server;VizWiz=vizwiz_test:server"
    assert "VQAv2=" not in row["columns_from"]
    markdown = (tmp_path / "lb.md").read_text()
    assert "VQAv2 (vqav2_testdev), VizWiz (vizwiz_test) answered, scored only by the evaluation server" in markdown
    assert "llava-eval submit" in markdown


def test_seed_image_questions_fill_the_seed_img_column_not_seed(suite_run):
    from llava_eval.leaderboard import run_row

    row = run_row(suite_run)
    seed = json.loads((suite_run / "seed_image" / "metrics.json").read_text())["metrics"]["accuracy"]
    assert row["SEED-IMG"] == pytest.approx(round(seed, 2)) and row["SEED"] is None
    assert "SEED-IMG=seed_image" in row["columns_from"].split(";")


def test_method_is_the_model_name_with_the_path_beside_it_and_limit_a_whole_number(suite_run, tmp_path):
    assert cli("leaderboard", suite_run, "--out", tmp_path / "lb.csv", "--with-paper").exit_code == 0
    rows = list(csv.DictReader((tmp_path / "lb.csv").open()))
    assert rows[0]["Method"] == "my-llava" and rows[0]["model"] == "/home/someone/checkpoints/my-llava"
    assert rows[0]["limit"] == "8" and rows[1]["limit"] == ""  # a paper row has no limit
    assert rows[1]["Res."] == "336"


def test_method_names():
    from llava_eval.leaderboard import method_name

    assert method_name("preset:tiny") == "tiny"
    assert method_name("/work/llava_model/assets/tiny-shapes") == "tiny-shapes"
    assert method_name("runs/long/stage2/final") == "long/stage2/final"  # the trainer's OUT/stageN/final
    assert method_name("served:llava-hf/llava-1.5-7b-hf") == "served:llava-1.5-7b-hf"
    assert method_name("always-yes") == "always-yes"


def test_markdown_leaves_missing_paper_cells_empty_and_labels_synthetic_runs(runs, tmp_path):
    assert cli("leaderboard", runs["yes"], "--out", tmp_path / "lb.csv", "--with-paper", "--markdown",
               tmp_path / "lb.md").exit_code == 0
    markdown = (tmp_path / "lb.md").read_text()
    assert "nan" not in markdown.lower()
    lines = {line.split("|")[1].strip(): line for line in markdown.splitlines() if line.startswith("| ")}
    assert "always-yes (synthetic data)" in lines
    assert lines["LLaVA-7B (v1)"].split("|")[2].strip() == ""  # no VQAv2 number in the paper: empty
    assert "(synthetic data): scored on the built-in synthetic shapes world" in markdown
    assert pd.read_csv(tmp_path / "lb.csv")["data"][0] == "synthetic"


def _on_hub(run_dir, tmp_path):
    """A copy of a run whose tasks record a hub source instead of the synthetic world."""
    import shutil

    other = tmp_path / "hub-run"
    shutil.copytree(run_dir, other)
    results = json.loads((other / "results.json").read_text())
    for name, entry in results.items():
        entry["options"]["data"] = "hub"
        (other / name / "metrics.json").write_text(json.dumps(entry))
    (other / "results.json").write_text(json.dumps(results))
    return other


def test_the_chart_marks_a_synthetic_run_and_says_it_is_not_comparable(runs, tmp_path):
    import matplotlib.pyplot as plt

    from llava_eval.leaderboard import chart, table

    hub = _on_hub(runs["no"], tmp_path)
    fig = chart(table([runs["yes"], hub], with_paper=True), n_runs=2)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    bars = fig.axes[0].patches
    captions = [t.get_text() for t in fig.texts]
    plt.close(fig)
    assert labels[:3] == ["always-yes (synthetic data)", "always-no", "LLaVA-1.5-7B"]
    assert bars[0].get_hatch() == "//" and not bars[1].get_hatch()
    assert bars[0].get_facecolor() != bars[1].get_facecolor()
    assert any("not comparable with the paper's" in c for c in captions)
