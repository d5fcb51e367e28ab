"""Assertions shared by the CLI tests: bad input ends with exit status 2 and exactly one `error: ...` line."""

from __future__ import annotations


def one_line_error(result, *fragments):
    """A click `CliRunner` result: exit 2 and one output line, `error: ...`, holding every fragment."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def one_line_stderr(proc, *fragments):
    """A finished subprocess: exit 2 and one stderr line, `error: ...`, holding every fragment."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
