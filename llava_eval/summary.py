"""The tables the commands print: one line per task for `run` and `rescore` (the primary metric with its
interval and the chance level beside it, n, what is missing: image errors, unanswered docs, a judge's verdict,
and how many answers were empty or degenerate), and the two-run table of `compare`. The report's summary shows
each task's metric through the same `score_parts`.
"""

from __future__ import annotations

import math

from .rundir import INCOMPLETE, NO_SCOREABLE_ROWS

FLAGS = (("n_missing", "missing"), ("n_errors", "image errors"), ("n_unanswered", "unanswered"),
         ("n_empty", "empty"), ("n_degenerate", "degenerate"))
# Under a table where some task counted empty or degenerate answers: what the counts mean.
ANSWER_NOTE = ("note: empty = an answer with no text, scored as the original scripts score it (on POPE it parses as "
               "\"yes\"); degenerate = a runaway repetition (a stretch 4+ times back to back, 16+ characters)")


def counted(n: int, noun: str) -> str:
    """`1 task`, `2 tasks`: a count with its noun in the right number."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def format_row(entry: dict) -> str:
    m = entry["metrics"]
    flags = [] if m.get("status") in (NO_SCOREABLE_ROWS, INCOMPLETE) else [
        f"{m[key]} {label}" for key, label in FLAGS if m.get(key)]
    chance = m.get("chance")
    beside = f"chance {chance['value']:7.2f}" if chance else ""
    return (f"{entry['task']:18} {entry['primary_metric']:14} {_shown(entry):>34}  {beside:14}  n={m.get('n_docs', 0)}"
            + (f"  ({', '.join(flags)})" if flags else ""))


def _shown(entry: dict) -> str:
    return " ".join(part for part in score_parts(entry) if part)


def score_parts(entry: dict) -> tuple[str, str, str]:
    """A task's primary metric as the run's table and the report show it: (the value, or why there is none; its
    95% interval or ""; "(judged)" for a judge's number or "")."""
    m = entry["metrics"]
    if m.get("status") == NO_SCOREABLE_ROWS:
        return f"no scoreable rows ({m.get('n_errors', 0)} image errors)", "", ""
    if m.get("status") == INCOMPLETE and "n_unanswered" in m:
        return f"no score ({m['n_unanswered']} unanswered)", "", ""
    if entry.get("judged_stale"):
        return "needs re-judging (answers changed)", "", ""
    if not entry["scored_locally"] and not entry.get("judged"):
        return "n/a (server/judge)", "", ""
    value = m.get(entry["primary_metric"])
    if not isinstance(value, int | float) or math.isnan(value):
        return ("no score (judging incomplete)" if entry.get("judged") else "nan"), "", ""
    ci = m.get("ci95")
    return (f"{value:.2f}", f"[{ci['low']:.2f}, {ci['high']:.2f}]" if ci else "",
            "(judged)" if entry.get("judged") else "")


def compare_lines(rows: list[dict], run_a, run_b) -> list[str]:
    """The table `llava-eval compare` prints: per task A, B, B - A with its interval, both p-values and the
    verdict with the test that decided it."""
    lines = [f"A = {run_a}", f"B = {run_b}",
             f"{'task':16} {'metric':11} {'n':>6} {'A':>8} {'B':>8} {'B-A':>8} {'95% CI':>18} "
             f"{'p(boot)':>8} {'p(McN)':>8}  verdict (test)"]
    for r in rows:
        mc = f"{r['p_mcnemar']:.3g}" if "p_mcnemar" in r else "n/a"
        lines.append(f"{r['task']:16} {r['metric']:11} {r['n_shared']:>6} {r['a']:>8.2f} {r['b']:>8.2f} "
                     f"{r['diff']:>+8.2f} {'[' + format(r['low'], '.2f') + ', ' + format(r['high'], '.2f') + ']':>18} "
                     f"{r['p_bootstrap']:>8.3g} {mc:>8}  {r['verdict']} ({r['test']})")
    return lines
