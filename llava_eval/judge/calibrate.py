"""`llava-eval judge calibrate`: the configured judge grades the answers whose verdicts the protocol's own judge
published (the task's `ReleasedVerdicts`: LLaVA-Bench's GPT-4 reviews and MM-Vet's grades of the LLaVA-1.5
answers), and the two are compared (calibration.agreement). Verdicts are kept like a run's: appended to
OUT/<task>/judge.jsonl and cached in OUT/judge-cache.sqlite, so a rerun asks only for what is missing; the
result goes to OUT/<task>/calibration.json, which a judge config names under `calibrations:`.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from tasks.base import Task, TaskError

from ..data import load_docs
from ..rundir import RunDir, write_json
from .cache import VerdictCache
from .calibration import CALIBRATION, KIND, agreement
from .client import JudgeClient, LazyJudgeClient
from .config import JudgeConfig
from .run import IncompleteJudging, Judging, is_verdict, judge_all, judged_task, judged_tasks


def calibrate_command(params: dict, echo=print) -> dict:
    """`llava-eval judge calibrate` from click's parameters (the judge options as `judge` takes them)."""
    from ..options import JudgeOptions, take

    judge = take(JudgeOptions, params)
    return calibrate(params["task_name"], params["data"], Path(params["answers"]),
                     [Path(r) for r in params["references"]], Path(params["out_dir"]), judge.load(),
                     data_root=params["data_root"], limit=params["limit"], no_cache=judge.no_cache,
                     allow_missing=judge.allow_missing, echo=echo)


def calibrate(name: str, data: str, answers: Path, references: list[Path], out: Path, config: JudgeConfig, *,
              data_root: str | None = None, limit: int | None = None, no_cache: bool = False,
              allow_missing: float = 0.0, echo=print) -> dict:
    """Judge the released answers of task `name` (rows from `data`) with `config`'s judge, compare with the
    released verdicts in `references`, write and return the calibration."""
    task = judged_task(name)
    released = task.judge.released
    if released is None:
        names = [n for n in judged_tasks() if judged_task(n).judge.released is not None]
        raise TaskError(f"{name} declares no released verdicts to calibrate against (tasks that do: "
                        f"{', '.join(names) or 'none'})")
    docs = load_docs(task, data, data_root=data_root, limit=limit)
    rows = list(docs.without_images(task))
    reference = released.verdicts(references)
    compared, left_out = _compared(task, rows, reference, released.answers(answers))
    folder = RunDir(out)
    if folder.is_run():  # its verdicts would be taken for verdicts on the run's own answers
        raise TaskError(f"{out} is a run directory; calibrate into a folder of its own")
    with folder.lock():
        model = config.model_for(task)
        stored, usage = _judge(folder, task, compared, model, config, no_cache)
    ours = {doc_id: [stored[(doc_id, r)]["parsed"] for r in range(config.runs)] for _, doc_id, _, _ in compared
            if all(is_verdict(stored.get((doc_id, r)), model) for r in range(config.runs))}
    missing = len(compared) - len(ours)
    left_out["judge_missing"] = missing
    if not ours or missing / len(compared) > allow_missing:
        raise IncompleteJudging(f"{name}: no verdict from {model} for {missing} of {len(compared)} answers (allowed "
                                f"share {allow_missing:g}); rerun `llava-eval judge calibrate` to fill them")
    kept = [(doc, doc_id, runs) for doc, doc_id, _, runs in compared if doc_id in ours]
    result = {"kind": KIND, "version": 1, "task": name, "judge_model": model, "judge_provider": config.provider,
              "base_url": config.base_url, "runs": config.runs, "protocol_model": task.judge.model,
              "reference": {"model": released.model, "files": [str(p) for p in references],
                            "runs": len(compared[0][3])},
              "answers": str(answers), "data": docs.source, "n_docs": len(rows), "n_compared": len(kept),
              "left_out": left_out,
              **agreement(task, [d for d, _, _ in kept], [r for _, _, r in kept], [ours[i] for _, i, _ in kept]),
              "usage": usage, "cost_usd": config.cost(model, usage["prompt_tokens"], usage["completion_tokens"]),
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path = folder.task_dir(name) / CALIBRATION
    write_json(path, result)
    for line in calibration_lines(result):
        echo(line)
    echo(f"wrote {path}")
    return result


def _compared(task: Task, docs: list[dict], reference: dict, answers: dict) -> tuple[list[tuple], dict]:
    """(doc, doc id, answer, reference verdicts per run) of every doc with a released answer and a readable
    released verdict in every reference run, and the counts of the docs left out, by reason."""
    released = task.judge.released
    ids = [task.doc_id(d, i) for i, d in enumerate(docs)]
    runs = max((len(reference[released.key(i)]) for i in ids if released.key(i) in reference), default=0)
    compared, left_out = [], {"no_answer": 0, "no_reference": 0, "reference_unreadable": 0}
    for doc, doc_id in zip(docs, ids, strict=True):
        key = released.key(doc_id)
        verdicts = reference.get(key)
        if key not in answers:
            left_out["no_answer"] += 1
        elif verdicts is None:
            left_out["no_reference"] += 1
        elif len(verdicts) != runs or any(v is None for v in verdicts):
            left_out["reference_unreadable"] += 1
        else:
            compared.append((doc, doc_id, answers[key], verdicts))
    if not compared:
        raise TaskError(f"{task.name}: no row of the data has both a released answer and released verdicts "
                        f"(left out: {left_out}); do the answer, reference and data files belong together?")
    return compared, left_out


def _judge(folder: RunDir, task: Task, compared: list[tuple], model: str, config: JudgeConfig,
           no_cache: bool) -> tuple[dict, dict]:
    """The stored verdict lines of the calibration folder, with those still missing asked now; the usage."""
    stored = folder.read_verdicts(task.name)
    jobs = [(doc, doc_id, answer, r) for doc, doc_id, answer, _ in compared for r in range(config.runs)
            if no_cache or not is_verdict(stored.get((doc_id, r)), model)]
    cache = VerdictCache(Path(config.cache) if config.cache else folder.judge_cache, enabled=not no_cache)
    judging = Judging(task.name, task, model, config, LazyJudgeClient(config, JudgeClient), cache,
                      folder.verdict_appender(task.name))
    try:
        stored.update(judge_all(judging, jobs))
    finally:
        cache.close()
    return stored, judging.usage


def calibration_lines(c: dict) -> list[str]:
    """The printed table: the headline and each category, reference and ours, the offset; then per answer."""
    head, per = c["headline"], c["per_answer"]
    left = sum(c["left_out"].values())
    lines = [f"{c['task']}: judge {c['judge_model']} against the released {c['reference']['model']} verdicts on "
             f"{c['n_compared']} of {c['n_docs']} answers" + (f" ({left} left out: {_reasons(c)})" if left else ""),
             f"  {'':16} {'n':>5} {'reference':>10} {'ours':>8} {'offset':>8}",
             f"  {head['metric']:16} {head['n']:>5} {head['reference']:>10.2f} {head['ours']:>8.2f} "
             f"{head['offset']:>+8.2f}  95% [{head['ci95'][0]:+.2f}, {head['ci95'][1]:+.2f}]"]
    for group, g in c["categories"].items():
        lines.append(f"  {group:16} {g['n']:>5} {g['reference']:>10.2f} {g['ours']:>8.2f} {g['offset']:>+8.2f}")
    pearson = "n/a" if per["pearson"] is None else f"{per['pearson']:.3f}"
    exact = "n/a" if per["exact_agreement"] is None else f"{100 * per['exact_agreement']:.1f}%"
    lines.append(f"  per answer: Pearson r {pearson}, mean |difference| {per['mean_abs_item_difference']:.3f}; "
                 f"exact agreement {exact} of {per['n_verdict_pairs']} verdict pairs")
    return lines


def _reasons(c: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in c["left_out"].items() if v)
