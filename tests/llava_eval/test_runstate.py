"""Run-directory safety in process: the lock, torn-line repair, fingerprint refusals, resume skipping."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from llava_eval.rundir import RunLock
from llava_eval.runner import run
from llava_eval.runstate import RunStateError, load_prediction_rows
from tasks.registry import get_task


class CountingModel:
    """Answers 'Yes' to everything and counts the requests it saw."""

    def __init__(self, answer="Yes"):
        self.answer, self.seen = answer, []

    def generate(self, requests):
        self.seen += [r.doc_id for r in requests]
        return [self.answer for _ in requests]


def _run(model, out, tasks=("pope",), limit=12, fp="m1", **kw):
    return run(model, list(tasks), out, model_id="fake", limit=limit, batch_size=4, echo=lambda *_: None,
               model_fp=fp, progress=False, **kw)


def test_second_lock_on_a_directory_is_refused(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunStateError, match="in use by pid"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released on exit
        pass


def test_torn_last_line_is_repaired_and_a_broken_middle_line_is_an_error(tmp_path):
    path = tmp_path / "p.jsonl"
    good = json.dumps({"question_id": 1, "text": "a"}) + "\n"
    path.write_text(good + '{"question_id": 2, "te')
    assert list(load_prediction_rows(path)) == [1]  # reading alone leaves the file as it is
    assert path.read_text().endswith('"te')
    assert list(load_prediction_rows(path, repair=True)) == [1]
    assert path.read_text() == good
    path.write_text(good + "not json\n" + good)
    with pytest.raises(RunStateError, match=r"p.jsonl:2: not valid JSON"):
        load_prediction_rows(path)


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"question_id": 1, "text": "a"}) + "\n" + json.dumps({"question_id": 2, "text": "b"}))
    assert list(load_prediction_rows(path, repair=True)) == [1, 2]


def test_rerun_skips_answered_docs_and_writes_no_duplicates(tmp_path):
    first = CountingModel()
    _run(first, tmp_path)
    assert len(first.seen) == 12
    lines = (tmp_path / "pope" / "predictions.jsonl").read_text().splitlines()
    (tmp_path / "pope" / "predictions.jsonl").write_text("\n".join(lines[:5]) + "\n" + lines[5][:20])
    second = CountingModel()
    results = _run(second, tmp_path)
    assert len(second.seen) == 7  # 5 kept, the torn sixth line and the rest redone
    ids = [json.loads(x)["question_id"] for x in (tmp_path / "pope" / "predictions.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 12
    assert results["pope"]["generated"] == 7
    config = json.loads((tmp_path / "config.json").read_text())
    assert len(config["resumes"]) == 1 and config["model_fingerprint"] == "m1"


def test_changed_model_is_refused_naming_it(tmp_path):
    _run(CountingModel(), tmp_path)
    with pytest.raises(RunStateError, match="different model"):
        _run(CountingModel(), tmp_path, fp="m2")


def test_changed_generation_settings_are_refused(tmp_path, monkeypatch):
    _run(CountingModel(), tmp_path)
    task = get_task("pope")
    monkeypatch.setattr(type(task), "max_new_tokens", task.max_new_tokens + 1)
    with pytest.raises(RunStateError, match="different generation settings"):
        _run(CountingModel(), tmp_path)


def test_changed_task_version_is_refused(tmp_path, monkeypatch):
    _run(CountingModel(), tmp_path)
    monkeypatch.setattr(type(get_task("pope")), "version", 99)
    with pytest.raises(RunStateError, match="different task version"):
        _run(CountingModel(), tmp_path)


def test_changed_prompt_is_refused(tmp_path, monkeypatch):
    _run(CountingModel(), tmp_path)
    cls = type(get_task("pope"))
    original = cls.prompt
    monkeypatch.setattr(cls, "prompt", lambda self, doc: original(self, doc) + " Please.")
    with pytest.raises(RunStateError, match="the prompt of"):
        _run(CountingModel(), tmp_path)


def test_changed_image_is_refused(tmp_path, monkeypatch):
    _run(CountingModel(), tmp_path)
    cls = type(get_task("pope"))
    original = cls.synthetic_docs

    def other_images(self, n, seed=0):
        docs = original(self, n, seed)
        shifted = original(self, n + 6, seed)[6:]  # the same questions on the next scene's image
        return [replace_image(d, s["image"]) for d, s in zip(docs, shifted, strict=True)]

    monkeypatch.setattr(cls, "synthetic_docs", other_images)
    with pytest.raises(RunStateError, match="the image of"):
        _run(CountingModel(), tmp_path)


def replace_image(doc, image):
    return {**doc, "image": image}


def test_lines_without_fingerprints_are_refused(tmp_path):
    (tmp_path / "pope").mkdir()
    (tmp_path / "pope" / "predictions.jsonl").write_text(json.dumps({"question_id": "pope-0-0", "text": "Yes"}) + "\n")
    with pytest.raises(RunStateError, match="no fingerprints"):
        _run(CountingModel(), tmp_path)


def test_metrics_carry_a_seeded_interval_around_the_point(tmp_path):
    results = _run(CountingModel(), tmp_path, tasks=("pope", "mme"), limit=30)
    for name in ("pope", "mme"):
        m = results[name]["metrics"]
        ci = m["ci95"]
        value = m[get_task(name).primary_metric]
        assert ci["low"] <= value <= ci["high"] and ci["n_boot"] == 1000
    again = _run(CountingModel(), tmp_path / "b", tasks=("pope", "mme"), limit=30)
    assert again["mme"]["metrics"]["ci95"] == results["mme"]["metrics"]["ci95"]


def test_generation_settings_fingerprint_differs_with_cap():
    from llava_eval.runstate import settings_fingerprint
    from llava_types import GenerationSettings

    base = GenerationSettings(max_new_tokens=128)
    assert settings_fingerprint(base) != settings_fingerprint(replace(base, max_new_tokens=1024))


def test_recorded_command_line_keeps_no_secret(tmp_path, monkeypatch):
    from llava_eval.runstate import environment

    token = "hf_" + "Ab1" * 12
    monkeypatch.setattr("sys.argv", ["/usr/bin/llava-eval", "judge", "runs/x", "--base-url", "https://alice:pw1@h/v1",
                                     "--api-key-env", "JUDGE_KEY", "--hf-token", "plain", "--api-key=abc", token,
                                     "Bearer eyJhbGciOiJIUzI1NiJ9", "--max-new-tokens", "5"])
    command = environment()["command"]
    assert command == ["llava-eval", "judge", "runs/x", "--base-url", "https://***@h/v1", "--api-key-env",
                       "JUDGE_KEY", "--hf-token", "***", "--api-key=***", "***", "Bearer ***", "--max-new-tokens", "5"]
    _run(CountingModel(), tmp_path, limit=2)
    recorded = (tmp_path / "config.json").read_text()
    assert "pw1" not in recorded and token not in recorded and "eyJ" not in recorded
