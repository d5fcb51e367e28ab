"""Leaderboards: one row per run directory in the LLaVA-1.5 paper's columns, optionally with the paper's own
rows (`leaderboards/llava-1.5-paper.csv`), as CSV, Markdown and a chart. A benchmark a run did not score stays
empty, never zero; the `columns_from` cell names the task (and split) each number came from, so a synthetic
or dev-split number is never mistaken for the paper's split, and `judges` names the judge of each judged number:
one that is not the task's protocol judge is listed in `non_protocol_judge`, marked with a dagger in the
Markdown table, and shown with its calibration offset when its judging recorded one (docs/judge.md).
"""

from __future__ import annotations

import math
from pathlib import Path

from tasks.base import TaskError
from tasks.registry import get_task

from .rundir import CONFIG, RESULTS, RunDir

# Paper column -> (tasks that fill it, first present wins; the metric). The paper reports test-dev / test
# splits where those exist; the local splits follow so that a locally scored run has numbers at all.
COLUMNS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("VQAv2", ("vqav2_testdev", "vqav2_val"), "accuracy"),
    ("GQA", ("gqa",), "accuracy"),
    ("VizWiz", ("vizwiz_test", "vizwiz_val"), "accuracy"),
    ("SQA-IMG", ("scienceqa_img",), "accuracy"),
    ("TextVQA", ("textvqa_val",), "accuracy"),
    ("POPE", ("pope",), "f1"),
    ("MME", ("mme",), "perception"),
    ("MMB", ("mmbench_en_test", "mmbench_en_dev"), "accuracy"),
    ("MMB-CN", ("mmbench_cn_test", "mmbench_cn_dev"), "accuracy"),
    ("SEED", ("seed_all",), "accuracy"),
    ("LLaVA-W", ("llava_bench",), "relative_score"),
    ("MM-Vet", ("mmvet",), "total"),
)
BENCHMARKS = [c for c, _, _ in COLUMNS]
RUN_FIELDS = ["Method", "date", "commit", "data", "limit", "task_versions", "columns_from", "judges",
              "non_protocol_judge", "source"]
MARK = "\u2020"  # dagger: a number from a judge other than the protocol's


def _number(value) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return round(float(value), 2)


def run_row(run_dir: Path) -> dict:
    """The leaderboard row of one run directory."""
    run = RunDir(run_dir)
    if not run.config_file.is_file() or not run.results_file.is_file():
        raise TaskError(f"{run} is not a finished run directory ({CONFIG} and {RESULTS} expected)")
    config, results = run.read_config(), run.read_results()
    row: dict = {"Method": config.get("model"), "date": (config.get("started") or "")[:10],
                 "commit": config.get("git_commit"), "data": config.get("data"), "limit": config.get("limit"),
                 "task_versions": ";".join(f"{k}:{v}" for k, v in sorted(config.get("tasks", {}).items())),
                 "prompts": prompts_label(config), "source": str(run)}
    used, judges, marked = [], [], []
    for column, candidates, metric in COLUMNS:
        row[column] = None
        for task in candidates:
            entry = results.get(task)
            value = _number(entry["metrics"].get(metric)) if entry else None
            if value is not None:
                row[column] = value
                used.append(f"{column}={task}")
                note = judge_note(task, entry["metrics"])
                if note is not None:
                    judges.append(f"{column}={note}")
                    marked += [column] if not protocol_judge(task, entry["metrics"]) else []
                break
    row.update(columns_from=";".join(used), judges=";".join(judges), non_protocol_judge=";".join(marked))
    return row


def prompts_label(config: dict) -> str:
    """How a run prompted its model: the paper's template byte for byte (LLaVA-family backends), or the paper's
    question text and suffixes through the model's own chat template or documented format (other families)."""
    return "paper prompts, model template" if config.get("prompt_mode") == "model template" else "paper"


def _protocol_model(task: str, metrics: dict) -> str | None:
    """The judge model the task's protocol names: as its judging recorded it, else as the task declares it now."""
    if isinstance(metrics.get("judge_protocol_model"), str):
        return metrics["judge_protocol_model"]
    try:
        judge = get_task(task).judge
    except TaskError:  # a task this version no longer has
        return None
    return judge.model if judge is not None else None


def protocol_judge(task: str, metrics: dict) -> bool:
    """Whether a judged number comes from the judge model the task's protocol names."""
    return metrics.get("judge_model") == _protocol_model(task, metrics)


def judge_note(task: str, metrics: dict) -> str | None:
    """Which judge produced a task's number: its model, and for another judge than the protocol's, that fact
    with the calibration offset its judging recorded (ours - the protocol judge's, 95% interval); None when no
    judge produced it."""
    model = metrics.get("judge_model")
    if not isinstance(model, str):
        return None
    offset = _calibration_text(metrics.get("judge_calibration"))
    if protocol_judge(task, metrics):
        return model + (f" ({offset})" if offset else "")
    return f"{model} (not the protocol judge {_protocol_model(task, metrics)}, {offset or 'no calibration recorded'})"


def _calibration_text(calibration) -> str | None:
    """The recorded calibration as the leaderboard shows it; None when none (or a damaged one) is recorded."""
    if not isinstance(calibration, dict):
        return None
    ci = calibration.get("ci95")
    values = [calibration.get("offset"), *(ci if isinstance(ci, list) and len(ci) == 2 else (None, None))]
    if any(_number(v) is None for v in values):
        return None
    offset, low, high = values
    reference = calibration.get("reference_model")
    return f"calibration offset {offset:+.2f} [95% {low:+.2f}, {high:+.2f}] against {reference}"


def paper_rows():
    import pandas as pd

    from leaderboards import PAPER

    return pd.read_csv(PAPER)


def table(run_dirs, with_paper: bool = False):
    """pandas DataFrame: the runs' rows, then (with_paper) the paper's, in the paper's column order."""
    import pandas as pd

    frame = pd.DataFrame([run_row(Path(d)) for d in run_dirs], columns=RUN_FIELDS + BENCHMARKS)
    if with_paper:
        paper = paper_rows()
        frame = pd.concat([frame, paper.reindex(columns=frame.columns.union(paper.columns, sort=False))],
                          ignore_index=True)
    ordered = ["Method"] + BENCHMARKS + [c for c in frame.columns if c not in BENCHMARKS and c != "Method"]
    return frame[ordered]


def to_markdown(frame) -> str:
    """The paper's columns; a number from a non-protocol judge gets a dagger and a note under the table."""
    shown = frame[["Method"] + BENCHMARKS]
    notes = []
    for i, marked in (frame["non_protocol_judge"].items() if "non_protocol_judge" in frame else ()):
        if isinstance(marked, str) and marked:
            shown = shown.astype(object) if not notes else shown
            for column in marked.split(";"):
                shown.at[i, column] = f"{shown.at[i, column]:g}{MARK}"
            notes.append(f"{MARK} {frame.at[i, 'Method']}: judged by {frame.at[i, 'judges']}")
    table = shown.to_markdown(index=False, missingval="") + "\n"
    return table + ("\n" + "\n".join(notes) + "\n" if notes else "")


def plot(frame, path: Path, n_runs: int) -> None:
    """One panel per benchmark with a number: the runs' bars (blue) beside the paper's rows (grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in BENCHMARKS if frame[c].notna().any()]
    if not columns:
        raise TaskError("no benchmark has a number in these runs; nothing to plot")
    cols = min(4, len(columns))
    rows = -(-len(columns) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 0.35 * len(frame) * rows + 1.5), squeeze=False)
    labels = [str(m) if len(str(m)) <= 28 else "..." + str(m)[-25:] for m in frame["Method"]]
    for ax, column in zip(axes.flat, columns, strict=False):
        values = frame[column].astype(float)
        colours = ["tab:blue" if i < n_runs else "0.6" for i in range(len(frame))]
        ax.barh(range(len(frame)), values.fillna(0).where(values.notna(), 0), color=colours)
        for i, v in enumerate(values):
            ax.text(0, i, " n/a" if math.isnan(v) else f" {v:g}", va="center", fontsize=7)
        ax.set_yticks(range(len(frame)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(column, fontsize=9)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
