"""Leaderboards: one row per run directory in the LLaVA-1.5 paper's columns, optionally with the paper's own
rows (`leaderboards/llava-1.5-paper.csv`), as CSV, Markdown and a chart. A benchmark a run did not score stays
empty, never zero; the `columns_from` cell names the task (and split) each number came from, so a synthetic
or dev-split number is never mistaken for the paper's split.
"""

from __future__ import annotations

import math
from pathlib import Path

from tasks.base import TaskError

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
RUN_FIELDS = ["Method", "date", "commit", "data", "limit", "task_versions", "columns_from", "source"]


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
                 "source": str(run)}
    used = []
    for column, candidates, metric in COLUMNS:
        row[column] = None
        for task in candidates:
            entry = results.get(task)
            value = _number(entry["metrics"].get(metric)) if entry else None
            if value is not None:
                row[column] = value
                used.append(f"{column}={task}")
                break
    row["columns_from"] = ";".join(used)
    return row


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
    shown = frame[["Method"] + BENCHMARKS]
    return shown.to_markdown(index=False, missingval="") + "\n"


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
