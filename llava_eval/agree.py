"""How far two runs' answers agree (`llava-eval agree RUN_A RUN_B`), e.g. the local reference engine (A) and the
same model served by vLLM or SGLang (B): per task, on the docs both answered, the share of identical answers,
the score difference B - A with its paired bootstrap interval (stats.paired_bootstrap; locally scored tasks), and
the first differing examples. The result is written as `agreement.json` (into RUN_B unless told otherwise).
"""

from __future__ import annotations

from pathlib import Path

from tasks.base import TaskError

from .rundir import RunDir, write_json
from .stats import paired_bootstrap


def agreement(run_a: Path, run_b: Path, names: list[str] | None = None, examples: int = 5) -> dict:
    """{"run_a", "run_b", "tasks": {task: entry}} for the tasks both runs answered (or `names`)."""
    run_a, run_b = Path(run_a), Path(run_b)
    in_b = set(RunDir(run_b).answered_tasks())
    shared = [t for t in RunDir(run_a).answered_tasks() if t in in_b]
    if names:
        missing = [n for n in names if n not in shared]
        if missing:
            raise TaskError(f"not answered in both runs: {', '.join(missing)}")
        shared = list(names)
    return {"run_a": str(run_a), "run_b": str(run_b),
            "tasks": {name: task_agreement(run_a, run_b, name, examples) for name in shared}}


def task_agreement(run_a: Path, run_b: Path, name: str, examples: int) -> dict:
    task, docs = RunDir(run_a).run_docs(name)  # the rows of A's data options; B's answers are matched by doc id
    texts_a, _ = RunDir(run_a).answers(name)
    texts_b, _ = RunDir(run_b).answers(name)
    ids = [task.doc_id(doc, i) for i, doc in enumerate(docs)]
    both = [i for i, d in enumerate(ids) if d in texts_a and d in texts_b]
    same = [i for i in both if texts_a[ids[i]] == texts_b[ids[i]]]
    entry = {"n_a": sum(d in texts_a for d in ids), "n_b": sum(d in texts_b for d in ids), "n_both": len(both),
             "n_identical": len(same), "identical": len(same) / len(both) if both else None,
             "differences": [{"question_id": ids[i], "a": texts_a[ids[i]], "b": texts_b[ids[i]]}
                             for i in both if texts_a[ids[i]] != texts_b[ids[i]]][:examples]}
    if both and task.scores_locally(docs) and not task.needs_judge:
        # Scored on the full row list (tasks whose ids are row positions keep them), compared on the shared docs.
        _, items_a = task.score(docs, texts_a)
        _, items_b = task.score(docs, texts_b)
        pick = lambda rows: [rows[i] for i in both]  # noqa: E731
        entry["score"] = {"metric": task.primary_metric,
                          **paired_bootstrap(task, pick(docs), pick(items_a), pick(items_b))}
    return entry


def write_agreement(result: dict, out: Path | None = None) -> Path:
    path = Path(out) if out else RunDir(result["run_b"]).agreement_file
    write_json(path, result)
    return path


def format_table(result: dict) -> list[str]:
    """The printed summary: one line per task, then the first differing answers."""
    lines = [f"A = {result['run_a']}", f"B = {result['run_b']}",
             f"{'task':16} {'n':>6} {'identical':>9} {'metric':11} {'A':>8} {'B':>8} {'B-A':>8} {'95% CI':>18}"]
    for name, e in result["tasks"].items():
        shown = "n/a" if e["identical"] is None else f"{100 * e['identical']:.1f}%"
        line = f"{name:16} {e['n_both']:>6} {shown:>9}"
        s = e.get("score")
        if s:
            ci = f"[{s['low']:.2f}, {s['high']:.2f}]"
            line += f" {s['metric']:11} {s['a']:>8.2f} {s['b']:>8.2f} {s['diff']:>+8.2f} {ci:>18}"
        lines.append(line)
    for name, e in result["tasks"].items():
        for d in e["differences"]:
            lines.append(f"  {name} {d['question_id']}: A {_short(d['a'])} | B {_short(d['b'])}")
    return lines


def _short(text: str, width: int = 60) -> str:
    shown = repr(text)
    return shown if len(shown) <= width else shown[: width - 3] + "..."
