"""`factlearn report` (rebuild the report files of a run folder) and the summary both commands print.

Light at import: matplotlib and rich's tables load inside the functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="rebuild results.json, tables, plots and report.html of a run folder",
                       description="Rebuild the report files of an existing run folder from its finished cells, "
                       "without computing anything. Unfinished cells are listed as missing.")
    r.add_argument("run_dir", help="a folder written by `factlearn run`")
    r.set_defaults(func=report_command)


def report_command(args) -> int:
    from factlearn.report.build import build_report

    run_dir = Path(args.run_dir)
    results = build_report(run_dir)
    print_summary(run_dir, None, None, None, results=results)
    return 0


def conclusion_lines(results: dict) -> list[str]:
    """'What this run shows' for the terminal: one line per finding (verdict, claim, headline measure)."""
    entries = results.get("conclusions") or []
    if not entries:
        return []
    lines = ["", "What this run shows (rules: README, 'What a run shows'; evidence: results.json 'conclusions'):"]
    for c in entries:
        scope = f" [{c.get('scope') or ', '.join(str(x) for x in (c.get('model'), c.get('method')) if x)}]"
        line = f"  {c['id']} {c['verdict'].upper():<15} {c['claim']}{scope}"
        measures = c.get("evidence", {}).get("measurements") or []
        ci = (measures[0].get("ci") or [None]) if measures else [None]
        if isinstance(measures[0].get("value") if measures else None, (int, float)) and all(
                isinstance(x, (int, float)) for x in ci):
            m = measures[0]
            p = f", p={m['p_value']:.2g}" if isinstance(m.get("p_value"), (int, float)) else ""
            if (test := c.get("contradiction_test")):  # the p that decided "contradicted", and entered Holm
                p = f", p(effect >= {test['bound']:g})={test['p']:.2g}"
            if isinstance(c.get("p_holm"), (int, float)):
                p += f" (Holm {c['p_holm']:.2g} of {c.get('holm_family')})"
            line += f"\n      {m['name']}: {m['value']:+.3f} [{m['ci'][0]:+.2f}, {m['ci'][1]:+.2f}]{p}"
        notes = c.get("evidence", {}).get("notes") or []
        line += "".join(f"\n      note: {n}" for n in notes[:2])
        lines.append(line)
    return lines


def print_summary(run_dir: Path, seconds: float | None, executed: int | None, reused: int | None,
                  results: dict | None = None) -> None:
    """The table on stdout, then where the files are."""
    import json

    from rich.console import Console

    from factlearn.run.progress import format_seconds
    from factlearn.report.tables import to_markdown, to_rich

    results = results or json.loads((run_dir / "results.json").read_text())
    console = Console()
    if console.is_terminal:
        console.print(to_rich(results["table"]["rows"], results["table"]["tasks"],
                              title=f"{results['run_config']['num_fewshot']}-shot results ({run_dir})"))
    else:  # piped or logged: the markdown table, unwrapped and easy to grep
        console.print(to_markdown(results["table"]["rows"], results["table"]["tasks"],
                                  results["run_config"]["num_fewshot"]), highlight=False, markup=False,
                      soft_wrap=True)
    if results.get("curves"):
        from factlearn.report.dose import curves_markdown

        console.print("\nLearning curves (score [interval] after each budget; curves.md, plots/):", highlight=False,
                      markup=False)
        console.print(curves_markdown(results["curves"]).rstrip(), highlight=False, markup=False, soft_wrap=True)
    for line in conclusion_lines(results):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if (results.get("numerics") or {}).get("note"):
        console.print(results["numerics"]["note"], highlight=False, markup=False, soft_wrap=True)
    if results["missing_cells"]:
        console.print(f"{len(results['missing_cells'])} cell(s) not finished; rerun `factlearn run` to complete them.")
    if seconds is not None:
        console.print(f"done in {format_seconds(seconds)}: {executed} cell(s) computed, {reused} reused", highlight=False)
    console.print(f"report: {run_dir / 'report.html'}  table: {run_dir / 'table.md'}  "
                  f"results: {run_dir / 'results.json'}", highlight=False)
