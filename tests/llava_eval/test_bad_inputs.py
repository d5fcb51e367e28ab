"""Every bad input ends in one `error: ...` line on stderr and exit status 2, never a traceback: a table of
bad inputs run through the CLI, one case per way a user can get a path, a file, a config or a secret wrong.
`OTHER_AREAS` holds the cases whose fixes live in the data and checkpoint loaders."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from llava_eval.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY_SHAPES = ROOT / "llava_model" / "assets" / "tiny-shapes"
KEY = "sk-proj-abcdefghijklmnop0123456789QRSTUV"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished run of pope and gqa (gqa has a submission format), two docs each."""
    out = tmp_path_factory.mktemp("run") / "r"
    result = CliRunner().invoke(main, ["run", "--model", "tiny", "--tasks", "pope,gqa", "--limit", "2", "--out",
                                       str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    return out


def readonly_dir(tmp_path: Path) -> Path:
    """A folder nobody may write in: a chmod-ed one, or (as root, whom chmod does not stop) /sys."""
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    try:
        with tempfile.TemporaryFile(dir="/sys"):
            pytest.skip("running as root and /sys is writable: no read-only folder to test with")
    except OSError:
        return Path("/sys")


def one_error_line(result, *fragments: str, hidden: str | None = None) -> str:
    """Exit 2 and exactly one stderr line, `error: ...`, holding every fragment and never `hidden`."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    if hidden is not None:
        assert hidden not in result.output
    return lines[0]


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


# ---- output paths ---------------------------------------------------------------------------------------
# (command line with OUT where the output goes, whether OUT is a folder the command creates)
OUTPUTS = {
    "run --out": (["run", "--model", "tiny", "--tasks", "pope", "--limit", "2", "--out", "OUT"], True),
    "leaderboard --out": (["leaderboard", "RUN", "--out", "OUT"], False),
    "leaderboard --markdown": (["leaderboard", "RUN", "--out", "TMP/ok.csv", "--markdown", "OUT"], False),
    "leaderboard --plot": (["leaderboard", "RUN", "--out", "TMP/ok.csv", "--plot", "OUT"], False),
    "report --out": (["report", "RUN", "--out", "OUT"], False),
    "submit --out": (["submit", "RUN", "--task", "gqa", "--out", "OUT"], False),
    "compare --csv": (["compare", "RUN", "RUN", "--csv", "OUT"], False),
    "convert DST": (["convert", str(TINY_SHAPES), "OUT"], True),
}


def _bad_output(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """(the bad output path, a fragment its error must hold)."""
    if kind == "missing folder":
        return tmp_path / "no-such-folder" / "out.csv", "does not exist"
    if kind == "parent is a file":
        (tmp_path / "a-file").write_text("x")
        return tmp_path / "a-file" / "out.csv", "is a file, not a folder"
    return readonly_dir(tmp_path) / "llava-eval-out.csv", "cannot write in"


@pytest.mark.parametrize("kind", ["missing folder", "parent is a file", "read-only folder"])
@pytest.mark.parametrize("command", list(OUTPUTS))
def test_unwritable_output_is_one_line(command, kind, run_dir, tmp_path):
    args, creates_folder = OUTPUTS[command]
    if kind == "missing folder" and creates_folder:
        pytest.skip("a missing run or checkpoint folder is created (with its parents)")
    out, fragment = _bad_output(kind, tmp_path)
    args = [str(out) if a == "OUT" else str(run_dir) if a == "RUN" else a.replace("TMP", str(tmp_path))
            for a in args]
    one_error_line(invoke(*args), fragment, str(out))
    assert not out.exists()


def test_output_that_is_a_folder_is_refused(run_dir, tmp_path):
    one_error_line(invoke("leaderboard", run_dir, "--out", tmp_path), "is a folder")


def test_outputs_are_checked_before_any_is_written(run_dir, tmp_path):
    one_error_line(invoke("leaderboard", run_dir, "--out", tmp_path / "ok.csv", "--plot", tmp_path / "no" / "p.png"),
                   "--plot")
    assert not (tmp_path / "ok.csv").exists()


def test_unwritable_run_folder_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    import llava_eval.cli as cli

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(cli, "load_from_options", never)
    (tmp_path / "a-file").write_text("x")
    one_error_line(invoke("run", "--tasks", "pope", "--out", tmp_path / "a-file" / "run"), "a-file")


# ---- a full disk ----------------------------------------------------------------------------------------
def test_full_disk_during_a_run_says_the_work_is_safe(tmp_path, monkeypatch):
    from llava_eval import rundir

    def full(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir.Appender, "write", full)
    out = tmp_path / "r"
    line = one_error_line(invoke("run", "--model", "tiny", "--tasks", "pope", "--limit", "2", "--out", out,
                                 "--no-progress"),
                          "no space left on device while writing", str(out), "every finished batch is saved",
                          "run the same command again to resume")
    assert line.startswith("error: no space left on device")


def test_full_disk_elsewhere_is_one_line(run_dir, tmp_path, monkeypatch):
    import pandas as pd

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    one_error_line(invoke("leaderboard", run_dir, "--out", tmp_path / "x.csv"), "no space left on device")


# ---- damaged prediction files ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["submit", "report"])
@pytest.mark.parametrize("damage, fragment", [
    ({"text": 3}, "'text' must be a string"),
    ({"text": None}, "'text' must be a string"),
    ({"question_id": [1]}, "question_id"),
    ({"error": {"x": 1}, "text": "__drop__"}, "'error' must be a string"),
])
def test_bad_prediction_line_names_file_and_line(command, damage, fragment, run_dir, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(run_dir, damaged)
    task = "gqa" if command == "submit" else "pope"
    pred = damaged / task / "predictions.jsonl"
    lines = pred.read_text().splitlines()
    row = {**json.loads(lines[1]), **damage}
    if row.get("text") == "__drop__":
        del row["text"]
    lines[1] = json.dumps(row)
    pred.write_text("\n".join(lines) + "\n")
    args = ["submit", damaged, "--task", "gqa", "--out", tmp_path / "s.json"] if command == "submit" else \
        ["report", damaged, "--out", tmp_path / "r.html"]
    one_error_line(invoke(*args), f"{pred}:2", fragment)


def test_prediction_line_not_utf8_names_file_and_line(run_dir, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(run_dir, damaged)
    pred = damaged / "gqa" / "predictions.jsonl"
    pred.write_bytes(pred.read_bytes() + b'{"question_id": "x", "text": "\xff"}\n')
    one_error_line(invoke("submit", damaged, "--task", "gqa", "--out", tmp_path / "s.json"), f"{pred}:3")


def test_score_predictions_not_utf8_names_the_file(tmp_path):
    pred = tmp_path / "answers.jsonl"
    pred.write_bytes(b'{"question_id": "pope-0-0", "text": "Yes \xff"}\n')
    one_error_line(invoke("score", "--task", "pope", "--data", "synthetic", "--predictions", pred),
                   str(pred), "not UTF-8")


# ---- judge config and secrets ---------------------------------------------------------------------------
@pytest.mark.parametrize("prices", ['{gpt-4: {input: "cheap", output: 1}}', "{gpt-4: {input: -1, output: 1}}",
                                    "{gpt-4: {input: true, output: 1}}", "{gpt-4: {input: .nan, output: 1}}"])
def test_judge_price_that_is_not_a_number_is_refused_at_load(prices, run_dir, tmp_path):
    config = tmp_path / "judge.yaml"
    config.write_text(f"prices: {prices}\n")
    one_error_line(invoke("judge", run_dir, "--judge-config", config), "price of 'gpt-4'", "input")


@pytest.mark.parametrize("value", [KEY, "MY KEY", "A" * 100, "1ABC", "hf_abcdefghijklmnopqrstuvwxyz",
                                   "AIzaSyD1234567890abcdefghijklmnopqrstuv"])
def test_api_key_env_holding_a_key_is_refused_unshown(value, run_dir):
    one_error_line(invoke("judge", run_dir, "--api-key-env", value),
                   "--api-key-env must name an environment variable", "not shown", hidden=value)


def test_api_key_env_in_yaml_holding_a_key_is_refused_unshown(run_dir, tmp_path):
    config = tmp_path / "judge.yaml"
    config.write_text(f"api_key_env: {KEY}\n")
    one_error_line(invoke("judge", run_dir, "--judge-config", config), "api_key_env", "not shown", hidden=KEY)


@pytest.mark.parametrize("url", ["https://alice:hunter2secret@judge.example/v1",
                                 "https://judge.example/v1?api-key=hunter2secret"])
def test_base_url_with_credentials_is_refused_unshown(url, run_dir, tmp_path):
    one_error_line(invoke("judge", run_dir, "--provider", "compatible", "--base-url", url), "--base-url",
                   hidden="hunter2secret")
    config = tmp_path / "judge.yaml"
    config.write_text(f"provider: compatible\nbase_url: {url}\n")
    one_error_line(invoke("judge", run_dir, "--judge-config", config), "base_url", hidden="hunter2secret")


def test_judge_config_not_utf8_names_the_file(run_dir, tmp_path):
    config = tmp_path / "judge.yaml"
    config.write_bytes(b"runs: 3  # \xff\xfe\n")
    one_error_line(invoke("judge", run_dir, "--judge-config", config), str(config), "not UTF-8")


def test_judge_config_that_is_a_folder(run_dir, tmp_path):
    one_error_line(invoke("judge", run_dir, "--judge-config", tmp_path), "is a folder")


@pytest.mark.parametrize("extra", [["--api-key-env", KEY], ["--base-url", "https://u:hunter2secret@h/v1"]])
def test_run_with_a_secret_on_the_command_line_is_refused(extra, tmp_path, monkeypatch):
    """Even when no task is judged: the command line would be recorded in config.json."""
    out = tmp_path / "r"
    args = ["run", "--model", "tiny", "--tasks", "pope", "--limit", "2", "--out", str(out), *extra]
    monkeypatch.setattr(sys, "argv", ["llava-eval", *args])
    one_error_line(invoke(*args), "not shown", hidden=extra[1].split("@")[0])
    assert not (out / "config.json").exists()


# ---- what is not a bad input keeps its traceback ----------------------------------------------------------
@pytest.mark.parametrize("error", [TypeError("a bug"), ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
                                   OSError("no errno")])
def test_a_bug_is_not_dressed_as_bad_input(error, monkeypatch):
    import llava_eval.cli as cli

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(cli, "load_from_options", broken)
    result = invoke("generate", "--prompt", "hi")
    assert result.exit_code == 1 and result.exception is error


# ---- through the installed command ----------------------------------------------------------------------
@pytest.mark.parametrize("make_args", [
    lambda run, tmp: ["judge", str(run), "--api-key-env", KEY],
    lambda run, tmp: ["leaderboard", str(run), "--out", str(tmp / "missing" / "x.csv")],
])
def test_one_line_from_the_console_script(make_args, run_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "llava_eval", *make_args(run_dir, tmp_path)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert KEY not in proc.stderr + proc.stdout


# ---- cases fixed in the data and checkpoint loaders -----------------------------------------------------
def _checkpoint(tmp: Path, file: str, content: bytes | None = None, truncate: int | None = None) -> Path:
    folder = tmp / "ckpt"
    shutil.copytree(TINY_SHAPES, folder)
    if truncate is not None:
        (folder / file).write_bytes((folder / file).read_bytes()[:truncate])
    else:
        (folder / file).write_bytes(content)
    return folder


def _pope_rows(tmp: Path, content: bytes) -> Path:
    path = tmp / "rows.jsonl"
    path.write_bytes(content)
    return path


POPE_ROW = json.dumps({"question_id": "a", "question": "Is there a cat?", "answer": "yes", "category": "c",
                       "image": None}).encode()


def _score(data: Path, tmp: Path) -> list:
    pred = tmp / "answers.jsonl"
    pred.write_text(json.dumps({"question_id": "a", "text": "Yes"}) + "\n")
    return ["score", "--task", "pope", "--data", str(data), "--predictions", str(pred)]


OTHER_AREAS = [
    ("truncated safetensors", lambda t: ["generate", "--model", _checkpoint(t, "model.safetensors", truncate=1000),
                                         "--prompt", "hi"]),
    ("config.json is []", lambda t: ["generate", "--model", _checkpoint(t, "config.json", b"[]"), "--prompt", "hi"]),
    ("config.json not UTF-8", lambda t: ["generate", "--model", _checkpoint(t, "config.json", b'{"a": "\xff"}'),
                                         "--prompt", "hi"]),
    ("unknown --template", lambda t: ["generate", "--model", "tiny", "--template", "nope", "--prompt", "hi"]),
    ("--device cuda on CPU", lambda t: ["generate", "--model", "tiny", "--device", "cuda", "--prompt", "hi"]),
    ("empty data file", lambda t: _score(_pope_rows(t, b""), t)),
    ("data file not UTF-8", lambda t: _score(_pope_rows(t, POPE_ROW[:-2] + b'"\xff"}\n'), t)),
    ("malformed JSONL data line", lambda t: _score(_pope_rows(t, POPE_ROW + b"\n{\"question_id\": 1\n"), t)),
    ("--data missing file", lambda t: _score(t / "missing.jsonl", t)),
    ("duplicate doc ids", lambda t: _score(_pope_rows(t, POPE_ROW + b"\n" + POPE_ROW + b"\n"), t)),
]


@pytest.mark.parametrize("make_args", [case for _, case in OTHER_AREAS], ids=[name for name, _ in OTHER_AREAS])
def test_other_areas_bad_input_is_one_line(make_args, tmp_path):
    args = make_args(tmp_path)
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    one_error_line(invoke(*args))
