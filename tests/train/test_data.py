"""Training data: LLaVA JSON/JSONL loading, validation that reports every problem, skip-or-fail,
seeded subsampling and the modality lengths of the original dataset."""

from __future__ import annotations

import json
import logging

import pytest

from llava_types import UserError
from train.data import (
    DataError,
    Sample,
    check_or_skip,
    load_samples,
    modality_lengths,
    subsample,
    validate,
)

# Shaped like the published files: LCS-558K (stage 1) and llava_v1_5_mix665k (stage 2, with a
# text-only ShareGPT record carrying the extra "model" key and an int id).
LCS_RECORD = {"id": "004539375", "image": "00453/004539375.jpg", "conversations": [
    {"from": "human", "value": "Render a clear and concise summary of the photo.\n<image>"},
    {"from": "gpt", "value": "select luxury furniture 3 - inch gel memory foam mattress topper"}]}
MIX_RECORD = {"id": "000000033471", "image": "coco/train2017/000000033471.jpg", "conversations": [
    {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
    {"from": "gpt", "value": "The bus in the image is white and red."},
    {"from": "human", "value": "What feature can be seen on the back of the bus?"},
    {"from": "gpt", "value": "The back of the bus features an advertisement."}]}
TEXT_RECORD = {"id": 123, "model": "", "conversations": [
    {"from": "gpt", "value": "Hello! How can I help?"},
    {"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi."}]}


def _sample(turns, image="a.jpg", sid="s"):
    return Sample(id=sid, image=image, turns=tuple(turns))


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(b"not decoded by validate")
    return tmp_path / "img"


def test_load_json_list_and_jsonl(tmp_path):
    records = [LCS_RECORD, MIX_RECORD, TEXT_RECORD]
    (tmp_path / "d.json").write_text(json.dumps(records, indent=1))
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    for name in ("d.json", "d.jsonl"):
        samples = load_samples(tmp_path / name)
        assert [s.id for s in samples] == ["004539375", "000000033471", "123"]
        assert samples[0].image == "00453/004539375.jpg" and samples[2].image is None
        assert samples[1].turns[1] == ("gpt", "The bus in the image is white and red.")
        assert len(samples[1].turns) == 4


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_samples(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('[{"id": 1,}]')
    with pytest.raises(DataError, match="invalid JSON at line 1"):
        load_samples(tmp_path / "bad.json")
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n{oops\n')
    with pytest.raises(DataError, match="line 2"):
        load_samples(tmp_path / "bad.jsonl")
    (tmp_path / "list.json").write_text('[{"id": 1}, 5]')
    with pytest.raises(UserError, match="not JSON objects"):
        load_samples(tmp_path / "list.json")


def test_published_shapes_are_valid(tmp_path):
    for rel in ("00453/004539375.jpg", "coco/train2017/000000033471.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "d.json").write_text(json.dumps([LCS_RECORD, MIX_RECORD, TEXT_RECORD]))
    samples = load_samples(tmp_path / "d.json")
    assert validate(samples, tmp_path) == []
    assert validate(samples[:1], tmp_path, template="plain") == []


CASES = {
    "missing": (_sample([("human", "<image>\nq"), ("gpt", "a")], image="b.jpg"), "missing image file"),
    "escape": (_sample([("human", "<image>\nq"), ("gpt", "a")], image="../a.jpg"), "escapes the image folder"),
    "absolute": (_sample([("human", "q"), ("gpt", "a")], image="/etc/passwd"), "escapes the image folder"),
    "empty": (_sample([]), "empty conversation"),
    "only_gpt": (_sample([("gpt", "a")]), "after skipping the leading gpt turn"),
    "not_alternating": (_sample([("human", "q"), ("human", "q2"), ("gpt", "a")]), "turn 1: expected a gpt turn"),
    "non_string": (_sample([("human", "q"), ("gpt", 5)]), "turn 1: value is not a string"),
    "unknown_role": (_sample([("user", "q"), ("gpt", "a")]), "turn 0: unknown role 'user'"),
    "empty_answer": (_sample([("human", "q"), ("gpt", "  \n")]), "turn 1: empty answer"),
    "two_images": (_sample([("human", "<image>\nq"), ("gpt", "a"), ("human", "<image> again"), ("gpt", "b")]),
                   "2 <image> placeholders"),
    "placeholder_no_image": (_sample([("human", "<image>\nq"), ("gpt", "a")], image=None), "sample without an image"),
    "no_answer": (_sample([("human", "q"), ("gpt", "a"), ("human", "q2")]), "ends with a human turn"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_problem_is_reported(folder, case):
    sample, reason = CASES[case]
    problems = validate([sample], folder)
    assert len(problems) == 1, problems
    assert reason in problems[0].reason and problems[0].sample_id == "s" and problems[0].index == 0


def test_valid_variants(folder):
    ok = [
        _sample([("gpt", "greeting"), ("human", "<image>\nq"), ("gpt", "a")]),  # leading gpt turn is skipped
        _sample([("human", "q"), ("gpt", "a")], image=None),  # text-only
        _sample([("human", "q <image>"), ("gpt", "a")], image="./sub/../a.jpg"),  # normalised inside the folder
    ]
    assert validate(ok, folder) == []


def test_all_problems_of_all_samples(folder):
    bad = _sample([("human", "<image> <image>"), ("gpt", ""), ("bot", 3)], image="nope.jpg", sid="x")
    samples = [CASES["missing"][0], bad, _sample([("human", "q"), ("gpt", "a")])]
    problems = validate(samples, folder)
    reasons = [(p.index, p.reason) for p in problems]
    assert [i for i, _ in reasons] == [0, 1, 1, 1, 1]
    text = " | ".join(r for _, r in reasons)
    for part in ("missing image file", "turn 1: empty answer", "unknown role 'bot'", "value is not a string"):
        assert part in text


def test_plain_template_shape(folder):
    good = _sample([("human", "Describe.\n<image>"), ("gpt", "a cat")])
    long = _sample([("human", "<image>\nq"), ("gpt", "a"), ("human", "q"), ("gpt", "b")])
    no_placeholder = _sample([("human", "Describe."), ("gpt", "a cat")])
    assert validate([good], folder, template="plain") == []
    assert "exactly 2 turns" in validate([long], folder, template="plain")[0].reason
    assert "in the first turn" in validate([no_placeholder], folder, template="plain")[0].reason
    assert validate([long, no_placeholder], folder) == []


def test_check_or_skip_raises_with_first_problems(folder):
    good = _sample([("human", "q"), ("gpt", "a")], sid="good")
    bad = [_sample([("human", "q"), ("gpt", "")], sid=f"bad{i}") for i in range(12)]
    assert check_or_skip([good], folder, skip_invalid=False) == [good]
    with pytest.raises(DataError) as info:
        check_or_skip([good, *bad], folder, skip_invalid=False)
    message = str(info.value)
    assert message.startswith("12 of 13 samples are invalid")
    assert "bad0: turn 1: empty answer" in message and "bad9:" in message and "bad10:" not in message
    assert "and 2 more" in message and "skip" in message
    assert isinstance(info.value, UserError)


def test_check_or_skip_skips_and_logs(folder, caplog):
    good = [_sample([("human", "q"), ("gpt", "a")], sid=f"g{i}") for i in range(3)]
    bad = _sample([("human", "q"), ("gpt", "")], sid="g1")  # duplicate id: only this one is dropped
    with caplog.at_level(logging.WARNING, logger="train.data"):
        kept = check_or_skip([good[0], bad, good[1], good[2]], folder, skip_invalid=True)
    assert kept == good
    assert "skipped 1 invalid samples of 4" in caplog.text


def test_subsample():
    samples = [_sample([("human", "q"), ("gpt", "a")], sid=str(i)) for i in range(100)]
    part = subsample(samples, 0.25, seed=42)
    assert len(part) == 25
    ids = [int(s.id) for s in part]
    assert ids == sorted(ids)
    assert part == subsample(samples, 0.25, seed=42)
    assert part != subsample(samples, 0.25, seed=43)
    assert len(subsample(samples, 0.333, seed=0)) == 33
    assert subsample(samples, 1.0, seed=0) == samples
    for bad in (0, -0.5, 1.5, "half", True):
        with pytest.raises(DataError, match="fraction"):
            subsample(samples, bad, seed=0)
    with pytest.raises(DataError, match="keeps no sample"):
        subsample(samples, 0.001, seed=0)


def test_modality_lengths():
    samples = [
        _sample([("human", "<image>\nWhat is  it?"), ("gpt", "A red\tcircle.")]),  # 4 + 3 words
        _sample([("gpt", "hello there"), ("human", "hi"), ("gpt", "yes")], image=None),  # leading gpt counts
    ]
    assert modality_lengths(samples) == [7, -4]

