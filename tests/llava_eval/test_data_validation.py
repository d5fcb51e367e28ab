"""Bad data is refused at load, before any model time, with one line naming the file and line (or row):
every row is checked (not a sample), JSON lines are read by the project's own reader (no `datasets` log
lines), empty and undecodable files, duplicate doc ids, broken original LLaVA layouts, unreadable answer
files, and a Hub that cannot be reached (within seconds; nothing here touches the network)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from llava_eval.cli import main
from llava_eval.data import Docs, check_schema, load_docs
from llava_eval.runner import run
from tasks.base import TaskError
from tasks.registry import get_task, load_all
from tests.cli_checks import one_line_error
from tests.tasks.test_mme import _write_layout as write_mme
from tests.tasks.test_pope import _write_layout as write_pope
from tests.tasks.test_textvqa import _layout as write_textvqa


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])



def pope_rows(n):
    return [{"question_id": f"q{i}", "question": f"Is there a thing {i}?", "answer": "yes" if i % 2 else "no",
             "category": ("adversarial", "popular", "random")[i % 3]} for i in range(n)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def score(data, predictions="none.jsonl", task="pope"):
    return cli("score", "--task", task, "--data", data, "--predictions", predictions)


class CountingModel:
    calls = 0

    def generate(self, requests):
        CountingModel.calls += 1
        return ["Yes" for _ in requests]


# ---- every row, before generation ---------------------------------------------------------------------------
def test_bad_row_700_of_1000_is_found_with_its_line(tmp_path):
    rows = pope_rows(1000)
    rows[700]["category"] = 3
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    one_line_error(score(data), "rows.jsonl:701: column 'category' should be str but has int 3")


def test_bad_row_is_refused_before_any_model_time(tmp_path):
    rows = pope_rows(1000)
    rows[700]["question"] = None
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    CountingModel.calls = 0
    with pytest.raises(TaskError, match="rows.jsonl:701: column 'question'"):
        run(CountingModel(), ["pope"], tmp_path / "run", model_id="m", data=str(data), echo=lambda *_: None)
    assert CountingModel.calls == 0


def test_every_row_of_a_parquet_file_is_checked_without_reading_images(tmp_path, monkeypatch):
    import datasets

    rows = [dict(r, image={"bytes": b"not read", "path": None}) for r in pope_rows(1000)]
    rows[700]["answer"] = None
    features = datasets.Features({"question_id": datasets.Value("string"), "question": datasets.Value("string"),
                                  "answer": datasets.Value("string"), "category": datasets.Value("string"),
                                  "image": datasets.Image()})
    path = tmp_path / "rows.parquet"
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
    iterated = []
    original = datasets.Dataset.iter
    monkeypatch.setattr(datasets.Dataset, "iter", lambda self, *a, **k: (iterated.append(self.column_names),
                                                                          original(self, *a, **k))[1])
    with pytest.raises(TaskError, match="row 701: column 'answer' should be str but has NoneType"):
        load_docs(get_task("pope"), str(path))
    assert iterated and all("image" not in names for names in iterated)


def test_list_rows_are_all_checked():
    rows = pope_rows(1000)
    rows[999]["question"] = 5  # the old check sampled every fifth row and missed this one
    with pytest.raises(TaskError, match="row 1000: column 'question' should be str"):
        check_schema(get_task("pope"), Docs(rows, "test"))


# ---- unreadable files: one line, no log lines from `datasets` --------------------------------------------------
ROW = json.dumps(pope_rows(1)[0]).encode()


@pytest.mark.parametrize("name, content, fragment", [
    ("rows.jsonl", ROW + b'\n{"question_id": "b" "x": 1}\n', "rows.jsonl:2: not valid JSON (Expecting ',' delimiter)"),
    ("rows.jsonl", b"", "rows.jsonl: no rows"),
    ("rows.jsonl", b"\n  \n\n", "rows.jsonl: no rows"),
    ("rows.jsonl", bytes(range(128, 256)) * 3, "rows.jsonl:1: not UTF-8"),
    ("rows.jsonl", b"[1, 2]\n", "rows.jsonl:1: expected a JSON object, got list"),
    ("rows.jsonl", ROW + b"\n7\n", "rows.jsonl:2: expected a JSON object, got int"),
    ("rows.jsonl", ROW + b'\n{"question_id": "b"}\n', "rows.jsonl:2: column 'question' missing"),
    ("rows.json", b"[" + ROW + b', "x"]', "rows.json item 2: expected a JSON object"),
    ("rows.parquet", bytes(range(256)), "rows.parquet: not a parquet file"),
    ("rows.parquet", b"", "rows.parquet: not a parquet file"),
])
def test_unreadable_data_file_is_one_line(tmp_path, name, content, fragment):
    (tmp_path / name).write_bytes(content)
    one_line_error(score(tmp_path / name), fragment)


def test_no_datasets_log_lines_on_stderr(tmp_path):
    """Through a real process: `datasets` logs to the stderr it found at import, out of CliRunner's reach."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(ROW + b'\n{"question_id": "q1", "quest')
    # A parquet file whose footer is intact but whose pages are not: only reading the rows finds out.
    corrupt = tmp_path / "corrupt.parquet"
    pq.write_table(pa.Table.from_pylist(pope_rows(2000)), corrupt, compression="snappy")
    data = bytearray(corrupt.read_bytes())
    data[100:3000] = b"A" * 2900
    corrupt.write_bytes(bytes(data))
    code = ("import sys; from llava_eval.cli import main\n"
            "main(['score', '--task', 'pope', '--data', sys.argv[1], '--predictions', 'none.jsonl'])")
    env = {"PYTHONPATH": str(Path.cwd()), "HOME": str(tmp_path), "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    for data, fragment in ((torn, "torn.jsonl:2: not valid JSON"), (corrupt, "corrupt.parquet: Corrupt snappy")):
        done = subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True, text=True,
                              cwd=tmp_path, env=env)
        assert done.returncode == 2 and done.stdout == "", done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], done.stderr


# ---- duplicate doc ids -----------------------------------------------------------------------------------------
def test_duplicate_doc_ids_are_refused_with_their_rows(tmp_path):
    rows = pope_rows(12)
    rows[8]["question_id"] = "q2"
    rows[9]["question_id"] = "q3"
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    one_line_error(score(data), "task pope: duplicate doc ids in", "'q2' (rows 3 and 9)", "'q3' (rows 4 and 10)")


def test_many_duplicates_are_summarised():
    from llava_eval.schema import check_doc_ids

    rows = pope_rows(4) * 3
    with pytest.raises(TaskError, match=r"'q0' \(rows 1 and 5\).*\(\+3 more\)$"):
        check_doc_ids(get_task("pope"), Docs(rows, "test"))


def test_duplicate_ids_in_a_dataset(tmp_path):
    import datasets

    rows = pope_rows(3)
    rows[2]["question_id"] = "q0"
    path = tmp_path / "rows.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    one_line_error(score(path), "duplicate doc ids in", "'q0' (rows 1 and 3)")


@pytest.mark.parametrize("name", sorted(load_all()))
def test_every_task_synthetic_data_passes_the_checks(name):
    docs = load_docs(get_task(name), "synthetic")
    assert len(docs) > 0


def test_mmbench_circular_copies_have_distinct_ids():
    task = get_task("mmbench_en_dev")
    docs = load_docs(task, "synthetic")
    ids = [task.doc_id(d, i) for i, d in enumerate(docs)]
    assert len(set(ids)) == len(ids) and any(int(i) >= 1_000_000 for i in ids)


# ---- answer files ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, fragment", [
    (b'{"question_id": "q0", "text": "yes"}\n\xff\xfe garbage\n', "a.jsonl:2: not UTF-8"),
    (b'{"question_id": "q0", "text": ["yes"]}\n', "a.jsonl:1: 'text' should be str but is list"),
    (b'{"question_id": "q0", "text": null}\n', "a.jsonl:1: 'text' should be str"),
    (b'{"text": "yes"}\n', "a.jsonl:1: missing 'question_id'"),
    (b'["q0", "yes"]\n', "a.jsonl:1: expected a JSON object"),
])
def test_unreadable_answer_file_is_one_line(tmp_path, content, fragment):
    data = write_jsonl(tmp_path / "rows.jsonl", pope_rows(3))
    (tmp_path / "a.jsonl").write_bytes(content)
    one_line_error(score(data, tmp_path / "a.jsonl"), fragment)


# ---- the original LLaVA layout ---------------------------------------------------------------------------------
def _pope(root):
    write_pope(root, {"adversarial": ["yes", "no", "yes"], "random": ["no"]})
    return root / "pope" / "llava_pope_test.jsonl"


def _mme(root):
    return write_mme(root) / "llava_mme.jsonl"


def _textvqa(root):
    write_textvqa(root)
    return root / "textvqa" / "llava_textvqa_val_v051_ocr.jsonl"


def _gqa(root):
    (root / "gqa" / "data").mkdir(parents=True)
    write_jsonl(root / "gqa" / "llava_gqa_testdev_balanced.jsonl", [
        {"question_id": "1", "image": "n1.jpg", "text": "Is it overcast?\nAnswer the question using a single word "
         "or phrase."}])
    (root / "gqa" / "data" / "testdev_balanced_questions.json").write_text(json.dumps({"1": {"answer": "no"}}))
    return root / "gqa" / "llava_gqa_testdev_balanced.jsonl"


def _tear(path):
    path.write_bytes(path.read_bytes().rstrip(b"\n")[:-12])


def _drop_field(field):
    def drop(path):
        lines = path.read_text().splitlines()
        row = json.loads(lines[-1])
        del row[field]
        path.write_text("\n".join([*lines[:-1], json.dumps(row)]) + "\n")
    return drop


def _retype(field, value):
    def retype(path):
        lines = path.read_text().splitlines()
        path.write_text("\n".join([*lines[:-1], json.dumps({**json.loads(lines[-1]), field: value})]) + "\n")
    return retype


def _garble(path):
    path.write_bytes(path.read_bytes() + b'{"question_id": "\xff\xfe"}\n')


LAYOUTS = {"pope": _pope, "mme": _mme, "textvqa_val": _textvqa, "gqa": _gqa}
BREAKS = {"missing": (lambda p: p.unlink(), "not found"), "torn": (_tear, "not valid JSON"),
          "no text": (_drop_field("text"), "missing 'text'"), "no image": (_drop_field("image"), "missing 'image'"),
          "text is a number": (_retype("text", 3), "'text' should be str but is int"),
          "not UTF-8": (_garble, "not UTF-8")}


@pytest.mark.parametrize("task", sorted(LAYOUTS))
@pytest.mark.parametrize("kind", sorted(BREAKS))
def test_broken_layout_is_one_line_naming_file_and_line(tmp_path, task, kind):
    question_file = LAYOUTS[task](tmp_path)
    assert len(load_docs(get_task(task), f"llava:{tmp_path}")) > 0  # intact, the layout loads
    lines = len(question_file.read_bytes().rstrip(b"\n").split(b"\n"))
    breaker, fragment = BREAKS[kind]
    breaker(question_file)
    where = question_file.name if kind == "missing" else f"{question_file.name}:{lines + (kind == 'not UTF-8')}"
    one_line_error(score(f"llava:{tmp_path}", task=task), where, fragment)


def test_broken_label_and_answer_files(tmp_path):
    _pope(tmp_path)
    labels = tmp_path / "pope" / "coco" / "coco_pope_random.json"
    labels.write_text('{"question_id": 0, "label": "no"}\n{"label": \n')
    one_line_error(score(f"llava:{tmp_path}"), "coco_pope_random.json:2: not valid JSON")
    labels.write_text('{"question_id": 0}\n')
    one_line_error(score(f"llava:{tmp_path}"), "coco_pope_random.json:1: missing 'label'")
    _gqa(tmp_path)
    gold = tmp_path / "gqa" / "data" / "testdev_balanced_questions.json"
    gold.write_text('{"1": {"answer": "no"},\n "2": ')
    one_line_error(score(f"llava:{tmp_path}", task="gqa"), "testdev_balanced_questions.json:2: not valid JSON")
    gold.write_text('{"1": {"fullAnswer": "No."}}')
    one_line_error(score(f"llava:{tmp_path}", task="gqa"), "testdev_balanced_questions.json: question '1': "
                                                             "missing 'answer'")
    gold.write_text('["1"]')
    one_line_error(score(f"llava:{tmp_path}", task="gqa"), "testdev_balanced_questions.json: expected a JSON object")


def _mmbench(root, columns=("index", "question", "A", "B", "answer", "image"), cells=None):
    image = base64.b64encode(b"\x89PNG not really").decode()
    cells = cells or [["431", "Which one?", "bird", "bat", "B", image]]
    (root / "mmbench").mkdir(exist_ok=True)
    path = root / "mmbench" / "mmbench_dev_20230712.tsv"
    path.write_text("\n".join(["\t".join(columns)] + ["\t".join(c) for c in cells]) + "\n")
    return path


def test_broken_mmbench_tsv(tmp_path):
    path = _mmbench(tmp_path)
    assert len(load_docs(get_task("mmbench_en_dev"), f"llava:{tmp_path}")) == 1
    _mmbench(tmp_path, columns=("index", "question", "A", "image"), cells=[["431", "Which one?", "bird", "x"]])
    one_line_error(score(f"llava:{tmp_path}", task="mmbench_en_dev"), "mmbench_dev_20230712.tsv",
                   "missing column(s) B, answer")
    _mmbench(tmp_path, cells=[["431", "Which one?", "bird", "bat", "B", "abc"]])
    one_line_error(score(f"llava:{tmp_path}", task="mmbench_en_dev"), "mmbench_dev_20230712.tsv:2", "base64")
    _mmbench(tmp_path, cells=[["four", "Which one?", "bird", "bat", "B", "abc="]])
    one_line_error(score(f"llava:{tmp_path}", task="mmbench_en_dev"), "mmbench_dev_20230712.tsv:2", "index")
    path.write_bytes(b"index\tquestion\n\xff\xfe\t\x80\n")
    one_line_error(score(f"llava:{tmp_path}", task="mmbench_en_dev"), "mmbench_dev_20230712.tsv")
    path.write_bytes(b"")
    one_line_error(score(f"llava:{tmp_path}", task="mmbench_en_dev"), "mmbench_dev_20230712.tsv")


# ---- the Hub -------------------------------------------------------------------------------------------------
@pytest.fixture
def no_download(monkeypatch):
    import datasets

    def refuse(*args, **kwargs):
        raise AssertionError("datasets.load_dataset must not be reached")

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)


def test_unreachable_hub_fails_within_seconds(monkeypatch, no_download):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # a closed port
    started = time.perf_counter()
    result = score("hub")
    assert time.perf_counter() - started < 10
    one_line_error(result, "cannot reach the Hugging Face Hub for lmms-lab/POPE", "HF_DATASETS_OFFLINE=1")


def test_offline_mode_loads_from_the_cache_without_asking_the_hub(monkeypatch):
    import datasets
    import huggingface_hub

    def ask(*args, **kwargs):
        raise AssertionError("the Hub must not be asked in offline mode")

    cached = datasets.Dataset.from_list(pope_rows(5))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", ask)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: cached)
    assert [d["question_id"] for d in load_docs(get_task("pope"), "hub")] == [f"q{i}" for i in range(5)]


def test_a_hub_that_answers_goes_on_to_load(monkeypatch):
    import datasets
    import huggingface_hub

    asked = []
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", lambda self, path, **k: asked.append((path, k)))
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_list(pope_rows(2)))
    assert len(load_docs(get_task("pope"), "hub:someone/POPE@abc123")) == 2
    assert asked == [("someone/POPE", {"revision": "abc123", "timeout": 3.0})]
