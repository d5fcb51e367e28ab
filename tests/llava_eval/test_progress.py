"""What `llava-eval run` leaves on a terminal: its progress bar draws and clears itself without moving the cursor
up (nested tqdm bars did, with ESC[A, leaving stray `[A` lines where a terminal wraps or ignores it), so that after
the run only the run line, one result line per task and the results path remain; and counts read `1 task`."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from llava_eval.backends.entry import BackendEntry
from llava_eval.backends.registry import BACKENDS
from llava_eval.cli import main


class Yes:
    """A backend that answers "yes" at once."""

    chunk_size = 2

    def __init__(self, model, options):
        self.source = f"yes:{model}"

    def generate(self, requests):
        return ["yes"] * len(requests)

    def fingerprint(self) -> str:
        return "yes-fingerprint"

    def record(self) -> dict:
        return {"backend": "yes", "device": "none"}

    def prompt(self, request) -> str:
        return request.messages[-1].text


@pytest.fixture
def yes(monkeypatch):
    monkeypatch.setitem(BACKENDS, "yes", BackendEntry(open=Yes))


def screen(text: str) -> list[str]:
    """The lines a terminal shows after `text`: carriage return, newline, cursor up (ESC[nA) and erase to the
    end of the line (ESC[K) applied; any other escape sequence is kept as text, so it shows as garbage."""
    lines, row, col = [[]], 0, 0
    for up, erase, char in re.findall(r"\x1b\[(\d*)A|(\x1b\[K)|(.)", text, re.S):
        if char == "\r":
            col = 0
        elif char == "\n":
            row, col = row + 1, 0
            lines += [[] for _ in range(row + 1 - len(lines))]
        elif erase:
            del lines[row][col:]
        elif char:
            lines[row] += [" "] * (col + 1 - len(lines[row]))
            lines[row][col], col = char, col + 1
        else:
            row = max(0, row - int(up or 1))
    return ["".join(line).rstrip() for line in lines if "".join(line).strip()]


def test_screen_applies_cursor_moves():
    assert screen("a\n\rbar 1\r     \r\x1b[Ab\n") == ["b"]
    assert screen("done\n\x1b[2J") == ["done", "\x1b[2J"]  # an unknown escape stays visible


def test_progress_bars_leave_no_stray_lines_on_a_terminal(yes, tmp_path):
    result = CliRunner().invoke(main, ["run", "--model", "yes:m", "--tasks", "pope,mme", "--limit", "4", "--out",
                                       str(tmp_path / "run"), "--progress"])
    assert result.exit_code == 0, result.output
    assert "q/s" in result.stderr  # the bar was drawn...
    assert "\x1b[A" not in result.stderr  # ...without moving the cursor up
    assert screen(result.stderr) == []  # ...and cleared: nothing of it remains
    lines = screen(result.stdout)
    assert [line.split()[0] for line in lines[1:3]] == ["pope", "mme"] and len(lines) == 4


def test_a_one_task_run_says_1_task(yes, tmp_path):
    result = CliRunner().invoke(main, ["run", "--model", "yes:m", "--tasks", "pope", "--limit", "2", "--out",
                                       str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "; 1 task; data synthetic;" in result.stdout.splitlines()[0]
    two = CliRunner().invoke(main, ["run", "--model", "yes:m", "--tasks", "pope,mme", "--limit", "2", "--out",
                                    str(tmp_path / "run2"), "--no-progress"])
    assert "; 2 tasks; data synthetic;" in two.stdout.splitlines()[0]


def test_a_one_run_leaderboard_says_1_run(yes, tmp_path):
    CliRunner().invoke(main, ["run", "--model", "yes:m", "--tasks", "pope", "--limit", "2", "--out",
                              str(tmp_path / "run"), "--no-progress"])
    result = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "run"), "--out", str(tmp_path / "lb.csv")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {tmp_path / 'lb.csv'} (1 run)")
