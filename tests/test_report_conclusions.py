"""A tiny `factlearn run` reports intervals on every score, paired comparisons and computed conclusions,
and its report.html opens with "What this run shows"."""

from __future__ import annotations

import csv
import json
import re

import pytest

from factlearn.report.conclusions import VERDICTS
from factlearn.run.config import load_run_config
from factlearn.run.plan import plan_grid
from factlearn.report.build import build_report
from factlearn.run.runner import execute_plan


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("concl") / "out"
    overrides = [f"models=[{tiny_model_dir}]", "n_countries=2", "seeds=[1]", "num_fewshot=1", "eval_limit=3",
                 "recipes.full.overrides=[epochs=1,batch_size=8,lr=1e-3]", "ablation.limit=2", "ablation.points=2",
                 "eval_batch_size=8"]
    execute_plan(plan_grid(load_run_config("default", overrides)), out, profile="test", write_report=build_report)
    return out


def _check_ci(value: float, ci, where: str) -> None:
    assert isinstance(ci, list) and len(ci) == 2, where
    assert ci[0] <= value + 1e-9 and value <= ci[1] + 1e-9, where


def test_every_score_has_an_interval(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    assert results["evaluations"] and all(ev["metrics"] for ev in results["evaluations"])
    assert results["table"]["rows"] and results["probes"] and results["ablations"]
    for ev in results["evaluations"]:
        for task, metrics in ev["metrics"].items():
            assert metrics, f"{ev['key']} {task} has no metric"
            for metric, value in metrics.items():
                _check_ci(value, ev["ci"][task][metric], f"{ev['key']} {task} {metric}")
    for row in results["table"]["rows"]:
        assert row["values"], row["condition"]
        for task, v in row["values"].items():
            _check_ci(v["mean"], v["ci"], f"table {row['condition']} {task}")
    for p in results["probes"]:
        assert p["result"]["summary"] and all(p["result"]["summary"].values()), p["condition"]
        for group, ratios in p["result"]["summary"].items():
            for ratio, s in ratios.items():
                _check_ci(s["mean"], s["ci"], f"probe {p['condition']} {group} {ratio}")
    for a in results["ablations"]:
        points = [pt for rows in a["result"]["sweeps"].values() for pt in rows] + list(a["result"]["entries"].values())
        assert points and a["result"]["tasks"]
        for pt in points:
            assert set(pt["ci"]) == set(a["result"]["tasks"])


def test_comparisons_and_conclusions(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    pairs = {(c["a"], c["b"]) for c in results["comparisons"]}
    assert {("narrative", "base"), ("referencing", "base"), ("narrative", "referencing"),
            ("narrative+forgetting", "narrative")} <= pairs
    for c in results["comparisons"]:
        assert c["ci"][0] <= c["diff"] <= c["ci"][1] and 0 <= c["p_value"] <= 1
        assert c["test"] in ("exact McNemar", "paired bootstrap")
    ids = [e["id"] for e in results["conclusions"]]
    assert ids == ["F1", "F2", "F3", "F4", "F5", "F6"]
    assert all(e["verdict"] in VERDICTS and e["rule"] for e in results["conclusions"])


def test_tables_show_intervals(run_dir):
    md = (run_dir / "table.md").read_text()
    assert re.search(r"\d\.\d{3} \[\d\.\d{2}, \d\.\d{2}\]", md)
    with open(run_dir / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(r["Eval_QA_ci_low"] and float(r["Eval_QA_ci_low"]) <= float(r["Eval_QA"]) for r in rows)


def test_html_opens_with_what_this_run_shows(run_dir):
    page = (run_dir / "report.html").read_text()
    first_h2 = re.search(r"<h2>(.*?)</h2>", page).group(1)
    assert first_h2 == "What this run shows"
    assert page.index("What this run shows") < page.index("<table")
    section = page[page.index("What this run shows"):page.index("<h2>Results</h2>")]
    assert all(f"<td>F{i}</td>" in section for i in range(1, 7))
