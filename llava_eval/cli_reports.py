"""Commands that read finished runs: `leaderboard` (paper columns, CSV/Markdown/plot), `compare` (paired
tests between two runs), `agree` (how far two runs' answers agree) and `report` (a static HTML page).
"""

from __future__ import annotations

import click

from .cli_options import user_errors


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_file", required=True, type=click.Path(), help="CSV file to write.")
@click.option("--with-paper", is_flag=True,
              help="Append the LLaVA-1.5 paper's rows (leaderboards/llava-1.5-paper.csv).")
@click.option("--markdown", "markdown_file", default=None, type=click.Path(), help="Also write a Markdown table.")
@click.option("--plot", "plot_file", default=None, type=click.Path(), help="Also write a chart (PNG).")
@user_errors
def leaderboard(run_dirs, out_file, with_paper, markdown_file, plot_file):
    """One row per run in the paper's columns; benchmarks a run did not score stay empty."""
    from pathlib import Path

    from . import leaderboard as lb
    from .errors import check_output
    from .summary import counted

    for path, option in ((out_file, "--out"), (markdown_file, "--markdown"), (plot_file, "--plot")):
        if path:
            check_output(path, option)
    frame = lb.table(run_dirs, with_paper=with_paper)
    frame.to_csv(out_file, index=False)
    click.echo(f"wrote {out_file} ({counted(len(run_dirs), 'run')}{', with the paper rows' if with_paper else ''})")
    if markdown_file:
        Path(markdown_file).write_text(lb.to_markdown(frame), encoding="utf-8")
        click.echo(f"wrote {markdown_file}")
    if plot_file:
        lb.plot(frame, Path(plot_file), n_runs=len(run_dirs))
        click.echo(f"wrote {plot_file}")


@click.command()
@click.argument("run_a", type=click.Path())
@click.argument("run_b", type=click.Path())
@click.option("--tasks", "task_list", default=None, help="Comma-separated tasks (default: all finished in both).")
@click.option("--csv", "csv_file", default=None, type=click.Path(), help="Also write the table as CSV.")
@user_errors
def compare(run_a, run_b, task_list, csv_file):
    """Per benchmark, B - A on the docs both runs answered, with a paired bootstrap 95% interval and
    p-value, and McNemar's exact test where every score is right or wrong."""
    from .errors import check_output
    from .stats import compare_runs
    from .summary import compare_lines

    if csv_file:
        check_output(csv_file, "--csv")
    rows = compare_runs(run_a, run_b, task_list.split(",") if task_list else None)
    if not rows:
        click.echo("no locally scored task finished in both runs")
        return
    click.echo("\n".join(compare_lines(rows, run_a, run_b)))
    if csv_file:
        import pandas as pd

        pd.DataFrame(rows).to_csv(csv_file, index=False)
        click.echo(f"wrote {csv_file}")


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", "out_file", default=None, type=click.Path(), help="HTML file (default RUN_DIR/report.html).")
@click.option("--max-samples", default=500, show_default=True, type=click.IntRange(min=1),
              help="Samples listed per task (failures first).")
@user_errors
def report(run_dir, out_file, max_samples):
    """Write a static HTML report: summary with intervals and paper deltas, and browsable samples."""
    from pathlib import Path

    from .errors import check_output
    from .report import write_report

    if out_file:
        check_output(out_file, "--out")
    path = write_report(Path(run_dir), Path(out_file) if out_file else None, max_samples=max_samples)
    click.echo(f"wrote {path}")


@click.command()
@click.argument("run_a", type=click.Path())
@click.argument("run_b", type=click.Path())
@click.option("--tasks", "task_list", default=None, help="Comma-separated tasks (default: all answered in both).")
@click.option("--examples", default=5, show_default=True, type=click.IntRange(min=0),
              help="Differing answers listed per task.")
@click.option("--out", "out_file", default=None, type=click.Path(), help="JSON file (default: in RUN_B).")
@user_errors
def agree(run_a, run_b, task_list, examples, out_file):
    """Per task, the share of identical answers of two runs (e.g. local engine vs served model), the score
    difference B - A with a paired bootstrap 95% interval, and the first differing answers."""
    from .agree import agreement, format_table, write_agreement
    from .errors import check_output

    if out_file:
        check_output(out_file, "--out")
    result = agreement(run_a, run_b, task_list.split(",") if task_list else None, examples)
    click.echo("\n".join(format_table(result)))
    click.echo(f"wrote {write_agreement(result, out_file)}")
