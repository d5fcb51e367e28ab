"""Every registered task end to end through the harness: synthetic rows pass the schema, a dummy
model that answers the gold text gets the metric's maximum, and the tiny model runs the whole
`llava-1.5` suite offline into a run directory with predictions, metrics and results."""

from __future__ import annotations

import json
import math

import pytest

from llava_eval.data import load_docs
from llava_eval.runner import run
from tasks.registry import SUITES, get_task, load_all

ALL_TASKS = sorted(load_all())
ROWS = 12


class GoldModel:
    """Answers every request with the task's gold text (lm-eval's DummyLM idea, made exact)."""

    def __init__(self, task, docs):
        self.gold = {task.doc_id(d, i): task.gold_text(d) for i, d in enumerate(docs)}

    def generate(self, requests):
        return [self.gold[r.doc_id] for r in requests]


def _maximum(task, docs, metrics):
    if task.name == "mme":
        # 200 per subtask (acc + acc+, both x100); perception sums the perception subtasks present.
        return metrics["perception"] == pytest.approx(200 * metrics["n_perception_subtasks"])
    return metrics[task.primary_metric] == pytest.approx(100.0)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_gold_answers_score_the_maximum(name, tmp_path):
    task = get_task(name)
    docs = load_docs(task, "synthetic", limit=ROWS)
    assert len(docs) == ROWS
    results = run(GoldModel(task, docs), [name], tmp_path, model_id="gold", data="synthetic", limit=ROWS,
                  echo=lambda *_: None)
    metrics = results[name]["metrics"]
    assert metrics["n_missing"] == 0 and metrics["n_errors"] == 0
    if task.scored_locally:
        assert _maximum(task, docs, metrics), metrics
    lines = (tmp_path / name / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == ROWS and len({json.loads(x)["question_id"] for x in lines}) == ROWS


def test_tiny_model_runs_every_task(tiny_bundle, tmp_path):
    """The paper suite first (its twelve benchmarks), then every other registered split."""
    from llava_eval.engine import LlavaEngine

    assert len(SUITES["llava-1.5"]) == 12
    names = list(SUITES["llava-1.5"]) + [n for n in ALL_TASKS if n not in SUITES["llava-1.5"]]
    results = run(LlavaEngine(tiny_bundle, batch_size=8), names, tmp_path, model_id="tiny", data="synthetic",
                  limit=4, echo=lambda *_: None)
    assert list(results) == names
    for name in names:
        entry = json.loads((tmp_path / name / "metrics.json").read_text())
        assert entry["metrics"]["n_docs"] == 4 and entry["metrics"]["n_missing"] == 0
        if entry["scored_locally"]:
            value = entry["metrics"][entry["primary_metric"]]
            assert value is not None and not math.isnan(value)
    assert json.loads((tmp_path / "results.json").read_text()).keys() == set(names)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["tasks"] == {n: get_task(n).version for n in names}
