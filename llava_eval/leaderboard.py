"""Leaderboards: one row per run directory in the LLaVA-1.5 paper's columns, optionally with the paper's own
rows (`leaderboards/llava-1.5-paper.csv`), as CSV, Markdown and a chart. A benchmark a run did not score stays
empty, never zero (answers that only the evaluation server or a judge scores are listed in `unscored`); the
`columns_from` cell names the task (and split) each number came from, so a dev-split number is never mistaken
for the paper's split; a run on the synthetic shapes world is labelled so in the Markdown and the chart, and
`judges` names the judge of each judged number: one that is not the task's protocol judge is listed in
`non_protocol_judge`, marked with a dagger in the Markdown table, and shown with its calibration offset when
its judging recorded one (docs/judge.md).
"""

from __future__ import annotations

import math
from pathlib import Path

from tasks.base import TaskError
from tasks.registry import get_task

from .rundir import CONFIG, RESULTS, RunDir

# Paper column -> (tasks that fill it, first present wins; the metric). The paper reports test-dev / test
# splits where those exist; the local splits follow so that a locally scored run has numbers at all. SEED is
# all questions (MODEL_ZOO's 58.6 / 61.6: `seed_all`); SEED-IMG the image questions (the CVPR paper's Table 4
# SEED-img 66.1 / 68.2: `seed_image`), two numbers that differ by about 8 points for the same model.
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
    ("SEED-IMG", ("seed_image",), "accuracy"),
    ("LLaVA-W", ("llava_bench",), "relative_score"),
    ("MM-Vet", ("mmvet",), "total"),
)
BENCHMARKS = [c for c, _, _ in COLUMNS]
RUN_FIELDS = ["Method", "model", "date", "commit", "data", "limit", "task_versions", "columns_from", "unscored",
              "judges", "non_protocol_judge", "source"]
INTEGERS = ("limit", "Res.")  # whole numbers: written as 48, not 48.0, and empty when absent
MARK = "\u2020"  # dagger: a number from a judge other than the protocol's
SYNTHETIC = "synthetic"  # the data source of the built-in synthetic shapes world
SYNTHETIC_LABEL = " (synthetic data)"
SYNTHETIC_NOTE = ("(synthetic data): scored on the built-in synthetic shapes world, not on the benchmarks' data: "
                  "these numbers are not comparable with the paper's.")


def _number(value) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return round(float(value), 2)


def method_name(model) -> str | None:
    """The name a run's model goes by in the Method column: a preset's name, the last folder of a checkpoint
    path (with its parents for the trainer's `OUT/stageN/final`), a backend prefix kept (`served:NAME`); the
    full recorded id stays in the `model` column."""
    if not isinstance(model, str) or not model:
        return model
    prefix, sep, rest = model.partition(":")
    if sep and rest and prefix.isidentifier():  # `preset:tiny`, `served:NAME`, `vllm:/path`
        return rest if prefix == "preset" else f"{prefix}:{method_name(rest)}"
    parts = [p for p in model.split("/") if p not in ("", ".")]
    if not parts:
        return model
    return "/".join(parts[-3:]) if parts[-1] == "final" else parts[-1]


def is_synthetic(data) -> bool:
    """Whether a row's `data` cell (the run's data sources, `;`-separated) includes the synthetic world."""
    return isinstance(data, str) and SYNTHETIC in data.split(";")


def run_row(run_dir: Path) -> dict:
    """The leaderboard row of one run directory."""
    run = RunDir(run_dir)
    if not run.config_file.is_file() or not run.results_file.is_file():
        raise TaskError(f"{run} is not a finished run directory ({CONFIG} and {RESULTS} expected)")
    config, results = run.read_config(), run.read_results()
    row: dict = {"Method": method_name(config.get("model")), "model": config.get("model"),
                 "date": (config.get("started") or "")[:10], "commit": config.get("git_commit"),
                 "data": ";".join(run.data_sources()), "limit": config.get("limit"),
                 "task_versions": ";".join(f"{k}:{v}" for k, v in sorted(config.get("tasks", {}).items())),
                 "prompts": prompts_label(config), "source": str(run)}
    used, unscored, judges, marked = [], [], [], []
    for column, candidates, metric in COLUMNS:
        row[column] = None
        for task in candidates:
            entry = results.get(task)
            if entry is not None and not entry.get("scored_locally", True) and not entry.get("judged"):
                unscored.append(f"{column}={task}:{_scorer(task)}")  # answered; a server or a judge scores them
                continue
            value = _number(entry["metrics"].get(metric)) if entry else None
            if value is not None:
                row[column] = value
                used.append(f"{column}={task}")
                note = judge_note(task, entry["metrics"])
                if note is not None:
                    judges.append(f"{column}={note}")
                    marked += [column] if not protocol_judge(task, entry["metrics"]) else []
                break
    row.update(columns_from=";".join(used), unscored=";".join(unscored), judges=";".join(judges),
               non_protocol_judge=";".join(marked))
    return row


def _scorer(task: str) -> str:
    """Who scores a task's answers when they are not scored here: `judge` or `server`."""
    try:
        return "judge" if get_task(task).judge is not None else "server"
    except TaskError:  # a task this version no longer has
        return "server"


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
    for column in INTEGERS:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column]).round().astype("Int64")
    ordered = ["Method"] + BENCHMARKS + [c for c in frame.columns if c not in BENCHMARKS and c != "Method"]
    return frame[ordered]


def to_markdown(frame) -> str:
    """The paper's columns, every number as written (a missing one empty); a synthetic-data run is labelled so
    and a number from a non-protocol judge gets a dagger, with notes under the table, which also say which
    answers only the evaluation server or a judge scores."""
    shown = frame[["Method"] + BENCHMARKS].astype(object)
    notes = []
    for i in frame.index:
        name = frame.at[i, "Method"]
        for column in BENCHMARKS:
            value = _number(frame.at[i, column])
            shown.at[i, column] = "" if value is None else f"{value:g}"
        for column in _cells(frame, i, "non_protocol_judge"):
            shown.at[i, column] += MARK
        if _cells(frame, i, "non_protocol_judge"):
            notes.append(f"{MARK} {name}: judged by {frame.at[i, 'judges']}")
        notes += _unscored_notes(name, _cells(frame, i, "unscored"))
        if "data" in frame and is_synthetic(frame.at[i, "data"]):
            shown.at[i, "Method"] = f"{name}{SYNTHETIC_LABEL}"
    if any(str(m).endswith(SYNTHETIC_LABEL) for m in shown["Method"]):
        notes.insert(0, SYNTHETIC_NOTE)
    table = shown.to_markdown(index=False) + "\n"
    return table + ("\n" + "\n\n".join(notes) + "\n" if notes else "")


def _cells(frame, i, field: str) -> list[str]:
    """The `;`-separated entries of a row's `field` (empty for the paper's rows)."""
    value = frame.at[i, field] if field in frame else None
    return value.split(";") if isinstance(value, str) and value else []


def _unscored_notes(name, unscored: list[str]) -> list[str]:
    """Why a run's answered benchmark has no number: its answers go to the evaluation server or to a judge."""
    by = {"server": [], "judge": []}
    for cell in unscored:
        column, _, rest = cell.partition("=")
        task, _, scorer = rest.partition(":")
        by.setdefault(scorer, []).append(f"{column} ({task})")
    notes = []
    if by["server"]:
        notes.append(f"{name}: {', '.join(by['server'])} answered, scored only by the evaluation server: submit "
                     "them with `llava-eval submit RUN_DIR --task TASK` (empty here).")
    if by["judge"]:
        notes.append(f"{name}: {', '.join(by['judge'])} answered, not judged yet: `llava-eval judge RUN_DIR` "
                     "(empty here).")
    return notes


def chart(frame, n_runs: int):
    """The leaderboard chart (a matplotlib Figure): one panel per benchmark with a number, the runs' bars (blue;
    a synthetic-data run orange, hatched and labelled so, with a caption) beside the paper's rows (grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in BENCHMARKS if frame[c].notna().any()]
    if not columns:
        raise TaskError("no benchmark has a number in these runs; nothing to plot")
    cols = min(4, len(columns))
    rows = -(-len(columns) // cols)
    synthetic = [i < n_runs and "data" in frame and is_synthetic(frame.at[i, "data"]) for i in range(len(frame))]
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 0.35 * len(frame) * rows + 1.5 + any(synthetic)),
                             squeeze=False)
    labels = [str(m) if len(str(m)) <= 28 else "..." + str(m)[-25:] for m in frame["Method"]]
    labels = [label + (SYNTHETIC_LABEL if s else "") for label, s in zip(labels, synthetic, strict=True)]
    colours = ["tab:orange" if s else "tab:blue" if i < n_runs else "0.6" for i, s in enumerate(synthetic)]
    for ax, column in zip(axes.flat, columns, strict=False):
        values = frame[column].astype(float)
        ax.barh(range(len(frame)), values.fillna(0), color=colours, hatch=["//" if s else "" for s in synthetic])
        for i, v in enumerate(values):
            ax.text(0, i, " n/a" if math.isnan(v) else f" {v:g}", va="center", fontsize=7)
        ax.set_yticks(range(len(frame)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(column, fontsize=9)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    if any(synthetic):
        fig.text(0.01, 0.005, "Orange, hatched " + SYNTHETIC_NOTE, fontsize=9, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04 if any(synthetic) else 0, 1, 1))
    return fig


def plot(frame, path: Path, n_runs: int) -> None:
    """Write the chart (`chart`) as an image."""
    import matplotlib.pyplot as plt

    fig = chart(frame, n_runs)
    fig.savefig(path, dpi=100)
    plt.close(fig)
