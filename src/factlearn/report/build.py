"""Build the report files of a run folder from its finished cells, without computing anything.

`factlearn run` calls this at the end; `factlearn report RUN_DIR` calls it alone. Cells that are not
finished (an interrupted run) are listed as missing, and the report shows what exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from factlearn.atomic import atomic_write_json, atomic_write_text
from factlearn.errors import UserError
from factlearn.report.dose import curve_evidence, curves_markdown, curves_table
from factlearn.run.cells import CellStore
from factlearn.stats import CI_LEVEL, check_level
from factlearn.versions import stack_versions
from factlearn.report.tables import mark_beyond, ordered_tasks, table_rows, to_csv, to_markdown

PLOTS = "plots"


def read_plan(run_dir: Path) -> dict:
    plan_file = run_dir / "plan.json"
    if not plan_file.is_file():
        raise UserError(f"{run_dir} is not a factlearn run folder (no plan.json); pass the folder that "
                        "`factlearn run` wrote (default runs/<profile>)")
    return json.loads(plan_file.read_text())


def _records_by_task(cell_dir: Path) -> dict[str, list[dict]]:
    """A control cell's per-item records grouped by task (the broken-by-training test pairs them)."""
    from factlearn.report.evidence import read_records

    out: dict[str, list[dict]] = {}
    for rec in read_records(cell_dir):
        out.setdefault(rec["task"], []).append(rec)
    return out


def collect_results(run_dir: str | Path) -> dict:
    """Everything a run produced, as one JSON-able dict (the content of results.json)."""
    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    store = CellStore(run_dir)
    invocation_file = run_dir / "last_invocation.json"
    invocation = json.loads(invocation_file.read_text()) if invocation_file.is_file() else {}
    out: dict = {"run_config": plan["run_config"], "ci_level": run_level(plan["run_config"]),
                 "world": plan["world"], "models": plan["models"],
                 "versions": stack_versions(), "cells": [], "evaluations": [], "probes": [], "ablations": [],
                 "training": [], "control": {}, "contamination": {}}
    stage_seconds: dict[str, float] = {}
    stage_cpu: dict[str, float] = {}
    for cell in plan["cells"]:
        key, kind, labels = cell["key"], cell["kind"], cell["labels"]
        done = store.is_done(key)
        entry = {"key": key, "kind": kind, "title": cell["title"], "labels": labels, "done": done,
                 "est_seconds": cell["est_seconds"]}
        if done:
            info = store.info(key)
            entry["seconds"], entry["cpu_seconds"] = info["seconds"], info.get("cpu_seconds")
            stage_seconds[kind] = stage_seconds.get(kind, 0.0) + info["seconds"]
            stage_cpu[kind] = stage_cpu.get(kind, 0.0) + (info.get("cpu_seconds") or 0.0)
            result = store.result(key)
            record = {**labels, "key": key}
            if kind == "eval":
                out["evaluations"].append({**record, "metrics": result["metrics"], "items": result.get("items")})
                # the same for every model (it depends on the data and the shots option only)
                out["contamination"] = {"shots": result.get("shots", "same-split"),
                                        "tasks": result.get("contamination", {})}
            elif kind == "control":
                if labels.get("method") == "base":  # what the model can do at all; trained ones: below
                    out["control"][labels["model"]] = _capability(result, out["ci_level"])
                out.setdefault("control_runs", []).append({**record, "records": _records_by_task(store.path(key))})
            elif kind == "probe":
                out["probes"].append({**record, "result": result})
            elif kind == "ablate":
                out["ablations"].append({**record, "result": result})
            elif kind == "train":
                out["training"].append({**record, "summary": result.get("summary"), "config": result.get("config"),
                                        "log": str(Path("cells") / key / "curve_log.jsonl")})
        out["cells"].append(entry)
    tasks = ordered_tasks(plan["run_config"]["tasks"])
    out["table"] = {"tasks": tasks, "rows": table_rows(out["evaluations"], tasks)}
    mark_beyond(out["table"]["rows"], out["control"])
    from factlearn.report.forms import add_marks

    add_marks(out, run_dir)  # answer forms and the wrong-form / broken-by-training marks
    from factlearn.report.numerics import numerics_summary

    out["numerics"] = numerics_summary(run_dir, out["cells"])  # says when cells ran under different numerics
    out["timings"] = {"cell_seconds_by_kind": stage_seconds, "cell_seconds_total": sum(stage_seconds.values()),
                      "cell_cpu_seconds_by_kind": stage_cpu,
                      "last_invocation": invocation}
    out["missing_cells"] = [c["key"] for c in out["cells"] if not c["done"]]
    return out


def make_plots(results: dict, run_dir: Path) -> list[dict]:
    """All figures of the report: [{"file", "title", "kind"}], PNGs under <run>/plots/."""
    from factlearn.report.plots import (plot_ablations, plot_curves, plot_dose_curves, plot_probe_summary,
                                        plot_reasoning_vs_knowledge, plot_scores)

    plots_dir = run_dir / PLOTS
    if plots_dir.is_dir():  # figures of an earlier config would mislead; rebuild the folder
        shutil.rmtree(plots_dir)
    figures: list[dict] = []
    if results["evaluations"]:
        figures += plot_scores(results, plots_dir)
    if results["probes"]:
        figures += plot_probe_summary(results, plots_dir)
    if results["ablations"]:
        figures += plot_ablations(results, run_dir, plots_dir)
    if results["training"] and "curves" in results["run_config"]["analyses"]:
        figures += plot_curves(results, run_dir, plots_dir)
    if results.get("curves"):
        figures += plot_dose_curves(results, plots_dir) + plot_reasoning_vs_knowledge(results, plots_dir)
    return figures


def add_conclusions(results: dict, run_dir: Path) -> dict:
    """Intervals next to every score, paired "comparisons" and the computed "conclusions" (in place).

    Read from the cells' per-item records (factlearn.report.evidence), at results["ci_level"].
    """
    from factlearn.report.conclusions import conclude
    from factlearn.report.evidence import evidence_from_run
    from factlearn.report.intervals import add_uncertainty

    level = results["ci_level"]
    evidence = evidence_from_run(run_dir, results)
    add_uncertainty(results, evidence, run_dir, level)
    from factlearn.report.fairness import run_scope
    from factlearn.stats import PARITY_MARGIN

    margin = results["run_config"].get("parity_margin", PARITY_MARGIN)
    scope = run_scope(results)
    results["conclusions"] = conclude(evidence, level, parity_margin=margin, scope=scope)
    curves = curve_evidence(run_dir, read_plan(run_dir)["cells"])
    if curves.points:  # learning curves: the table, and the findings decided at matched knowledge
        from factlearn.report.matched import add_curve_findings

        results["curves"] = curves_table(curves, level)
        add_curve_findings(results["conclusions"], evidence, curves, level, margin, scope)
    return results


def build_report(run_dir: str | Path) -> dict:
    """Write results.json, table.md, table.csv, plots/*.png, report.html and, with learning curves,
    curves.md; return the results."""
    from factlearn.report.html import render_html

    run_dir = Path(run_dir)
    results = collect_results(run_dir)
    add_conclusions(results, run_dir)
    results["figures"] = make_plots(results, run_dir)
    tasks = results["table"]["tasks"]
    numerics_note = (results.get("numerics") or {}).get("note")
    atomic_write_text(run_dir / "table.md", to_markdown(results["table"]["rows"], tasks, results["run_config"]["num_fewshot"])
                      + (f"\n{numerics_note}\n" if numerics_note else ""))
    atomic_write_text(run_dir / "table.csv", to_csv(results["table"]["rows"], tasks))
    if results.get("curves"):
        atomic_write_text(run_dir / "curves.md", curves_markdown(results["curves"]))
    atomic_write_json(run_dir / "results.json", results)
    atomic_write_text(run_dir / "report.html", render_html(results, run_dir))
    return results



def run_level(run_config: dict) -> float:
    """The run's confidence level, read here once for the whole report: its `ci_level`, checked; a run
    folder written before runs had the setting is read at the default."""
    return check_level(run_config.get("ci_level", CI_LEVEL))


def _capability(control_result: dict, level: float) -> dict:
    """A control cell's decision at the run's ci_level: from its counts; a run folder written before the
    cells stored counts (its `capability` holds its interval at the level it ran with) is read as it is."""
    from factlearn.evaluate.control import capability_of

    if "counts" not in control_result:
        return control_result["capability"]
    return capability_of(control_result["counts"], level)
