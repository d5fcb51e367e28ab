"""`llava-eval report RUN_DIR`: one static HTML file (no server, no external assets) with the summary table
(metric and bootstrap interval exactly as `llava-eval run` prints them, the paper's LLaVA-1.5 numbers and the
differences, the judge of a judged number: a dagger marks a judge other than the protocol's, shown with its
calibration offset; the chance level; how many answers were empty or degenerate) and, per task, the samples
with image thumbnail, prompt, raw output, parsed answer, gold, score and judge rationale, each in one state
(failed, partial credit, passed, not judged, not scored here), failures first and filterable to failures
(open the file with `#failures` to start filtered).
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from urllib.parse import quote

from tasks.base import TaskError

from .summary import score_parts

THUMB = 160
# The states whose score cell says why the item's own score does not count.
UNSCORED = {"unjudged": "not judged", "unscored": "not scored here"}
ORDER = ("fail", "partial", "unjudged", "unscored", "judged", "pass")  # the order samples are listed in


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _paper_values() -> dict:
    from .leaderboard import paper_rows

    frame = paper_rows().set_index("Method")
    return {name: frame.loc[name].to_dict() for name in ("LLaVA-1.5-7B", "LLaVA-1.5-13B")}


def _column_of(task: str) -> str | None:
    from .leaderboard import COLUMNS

    return next((column for column, tasks, _ in COLUMNS if task in tasks), None)


def _summary(results: dict) -> list[dict]:
    from .leaderboard import judge_note, protocol_judge

    paper = _paper_values()
    rows = []
    for name, entry in results.items():
        m = entry["metrics"]
        shown, interval, judged = score_parts(entry)  # what `llava-eval run` printed for the task
        value = m.get(entry["primary_metric"])
        # compared with the paper only where the table shows a number (not "n/a (server/judge)", "nan", ...)
        value = value if isinstance(value, int | float) and shown == f"{value:.2f}" else None
        column = _column_of(name)
        chance = m.get("chance") or {}
        row = {"task": name, "metric": entry["primary_metric"], "value": " ".join(filter(None, (shown, judged))),
               "n": m.get("n_docs", ""), "errors": m.get("n_errors", 0), "ci": interval, "column": column or "",
               "judge": judge_note(name, m) or "",
               "chance": _fmt(chance.get("value")), "chance_by": chance.get("answerer", ""),
               "trouble": f"{m['n_empty']} / {m['n_degenerate']}" if "n_empty" in m else "",
               "mark": judge_note(name, m) is not None and not protocol_judge(name, m)}
        for size, key in (("7", "LLaVA-1.5-7B"), ("13", "LLaVA-1.5-13B")):
            ref = paper[key].get(column) if column else None
            ref = None if ref is None or (isinstance(ref, float) and math.isnan(ref)) else float(ref)
            row[f"p{size}"] = _fmt(ref, 1)
            row[f"d{size}"] = f"{value - ref:+.2f}" if ref is not None and value is not None else ""
        rows.append(row)
    return rows


def sample_state(item: dict, judged_task: bool, has_verdict: bool, scored_here: bool = True) -> str:
    """How the report shows a sample: `fail` (score 0, or no answer at all), `partial` (0 < score < 1: VQA credit
    from some annotators), `pass`, `unjudged` / `judged` (a judged task's answer without / with a verdict: its
    item carries no score of its own) or `unscored` (the evaluation server scores the split, as the run's table
    says, even where these rows carry answers)."""
    if item["prediction"] is None:
        return "fail"
    if judged_task:
        return "judged" if has_verdict else "unjudged"
    score = item["score"]
    if score is None or not scored_here:
        return "unscored"
    return "pass" if score >= 1 else "partial" if score > 0 else "fail"


def _thumbnail(value, root) -> str | None:
    from llava_model.errors import ImageError
    from llava_model.preprocess import load_image

    from .data import resolve_image

    try:
        image = load_image(resolve_image(value, root)).convert("RGB")
    except (ImageError, TaskError, OSError):
        return None
    image.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _task_section(run_dir: Path, name: str, max_samples: int) -> dict:
    from tasks.registry import get_task

    from .data import image_root, load_docs
    from .rundir import RunDir

    task, run = get_task(name), RunDir(run_dir)
    items = run.read_items(name)
    prompts = {k: r.get("prompt", "") for k, r in run.prediction_rows(name).items()}
    verdicts = {doc_id: row for (doc_id, _), row in run.read_verdicts(name).items()}
    scored_here = (run.entry(name) or {}).get("scored_locally", True)
    states = [sample_state(x, task.needs_judge, x["question_id"] in verdicts, scored_here) for x in items]
    order = sorted(range(len(items)), key=lambda i: (ORDER.index(states[i]), i))[:max_samples]
    options = run.task_data_options(name)
    root = image_root(options["data"], options["data_root"])
    try:
        docs = load_docs(task, options["data"], data_root=options["data_root"], limit=options["limit"])
    except TaskError:
        docs = None  # the source is gone (a hub split not cached here): the samples show without images
    samples = []
    for i in order:
        item = items[i]
        thumb = None
        if docs is not None and i < len(docs):
            values = task.image_values(docs[i])
            thumb = _thumbnail(values[0], root) if values else None
        samples.append({"id": item["question_id"], "anchor": f"{name}-{quote(str(item['question_id']), safe='')}",
                        "thumb": thumb, "prompt": prompts.get(item["question_id"], ""),
                        "output": "" if item["prediction"] is None else item["prediction"],
                        "parsed": "" if item["parsed"] is None else item["parsed"], "gold": item["gold"],
                        "score": _score_text(item, states[i]), "state": states[i],
                        "judge": verdicts.get(item["question_id"], {}).get("raw", "")})
    return {"name": name, "samples": samples, "shown": len(samples), "total": len(items),
            "counts": {state: states.count(state) for state in ORDER if state in states}, "judged": bool(verdicts)}


def _score_text(item: dict, state: str) -> str:
    if state in UNSCORED:
        return UNSCORED[state]
    return _fmt(item["score"]) or ("no answer" if item["prediction"] is None else "")


def write_report(run_dir: Path, out: Path | None = None, max_samples: int = 500) -> Path:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from .leaderboard import SYNTHETIC, prompts_label
    from .rundir import RunDir

    run = RunDir(run_dir)
    config = run.read_config()
    results = run.read_results()
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                      autoescape=select_autoescape(["html", "jinja"]))
    html = env.get_template("report.html.jinja").render(
        model=config.get("model"), prompts=prompts_label(config), data=config.get("data"), limit=config.get("limit"),
        started=config.get("started"), commit=config.get("git_commit"),
        synthetic=SYNTHETIC in run.data_sources(), summary=_summary(results), agreement=_agreement(run),
        tasks=[_task_section(run_dir, n, max_samples) for n in results
               if run.has_items(n)])
    out = out or run_dir / "report.html"
    out.write_text(html, encoding="utf-8")
    return out


def _agreement(run) -> dict | None:
    """What `llava-eval agree RUN_A THIS_RUN` found, for the report's header: the other run, a link to the
    agreement file, and each task's share of identical answers; None when no agreement was measured."""
    path = run.agreement_file
    if not path.is_file():
        return None
    from .rundir import read_json

    found = read_json(path)
    tasks = found.get("tasks") if isinstance(found.get("tasks"), dict) else {}
    shares = [(name, "n/a" if not isinstance(e, dict) or e.get("identical") is None else
               f"{100 * e['identical']:.1f}% identical") for name, e in tasks.items()]
    return {"run_a": found.get("run_a"), "href": path.name, "tasks": shares}
