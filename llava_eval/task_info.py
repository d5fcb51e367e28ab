"""What `llava-eval tasks` prints: every task with its version and title, the suites, and one task's contract
(source, split, doc-id rule, columns, prompt example, metrics, versions).
"""

from __future__ import annotations


def task_list() -> list[str]:
    from tasks.registry import SUITES, load_all

    lines = [f"{name:18} v{cls.version}  {cls.title}" for name, cls in sorted(load_all().items())]
    return [*lines, "", *(f"suite {suite}: {', '.join(names)}" for suite, names in SUITES.items())]


def task_contract(name: str) -> list[str]:
    from tasks.registry import get_task

    task = get_task(name)
    hub = str(task.hub) if task.hub else "-"
    return [
        f"task:        {task.name} (version {task.version}) - {task.title}",
        f"reference:   {task.reference}",
        f"source:      {hub}",
        f"split:       {task.split}",
        f"rows:        {_row_count(task)}",
        f"doc id:      {task.doc_id_rule}",
        f"columns:     {', '.join(f'{k}:{v}' for k, v in task.schema.items())}",
        f"max tokens:  {task.max_new_tokens}",
        f"image mode:  {task.image_mode or 'checkpoint default (pad for LLaVA-1.5)'}",
        f"metrics:     {', '.join(task.metrics)} (primary: {task.primary_metric})",
        f"scored:      {'locally' if task.scored_locally else 'by the evaluation server or GPT judge'}",
        f"versions:    request {task.version}, scoring {task.scoring_version} (a scoring change rescores the "
        "stored answers; a request change needs new ones)",
        "prompt example (user turn, before the vicuna_v1 template):",
        "  " + repr(task.request(task.synthetic_docs(1)[0], 0, ("image",)).messages[0].text),
    ]


def _row_count(task) -> str:
    return f"{task.row_count:,}" if task.row_count else "not fixed (see split)"
