"""Put a confidence interval next to every score of results.json, and the paired comparisons.

Scores are noisy (a few items per task, a few seeds), so each one gets `"ci": [low, high]` beside
it (factlearn.stats.score_interval: Wilson or bootstrap over items within a seed, Student-t
over seeds when a row has several):

- evaluations[i]["ci"][task][metric]: item-level, that cell's seed only;
- table rows' values[task]["ci"]: over seeds (several) or items (one), the column's metric;
- probes[i]["result"]["summary"][group][ratio]["ci"]: bootstrap over facts (nats, unbounded);
- ablations[i]["result"]["sweeps"|"entries"]...["ci"][task]: the tracked metric, over items.

`comparisons` pairs conditions on the same items: narrative vs referencing, narrative+forgetting vs
narrative, and every trained condition vs the base model, per model, method and task.
"""

from __future__ import annotations

import zlib

from factlearn.stats import paired_comparison, score_interval
from factlearn.report.evidence import BASE, Evidence, pair_items, read_records

# (a, b) condition pairs compared on the same items, beyond "every trained condition vs base".
CONDITION_PAIRS = (("narrative", "referencing"), ("narrative+forgetting", "narrative"))


def _seed(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode("utf-8"))


def _ci(values: list[float] | list[list[float]], level: float, *parts, bounds=(0.0, 1.0)) -> list[float]:
    per_seed = values if values and isinstance(values[0], list) else [values]
    return [float(x) for x in score_interval(per_seed, level, seed=_seed(*parts), bounds=bounds)["ci"]]


def evaluation_intervals(results: dict, run_dir, level: float) -> None:
    """evaluations[i]["ci"] = {task: {metric: [low, high]}}, from the cell's per-item records."""
    from factlearn.run.cells import CellStore

    store = CellStore(run_dir)
    for entry in results.get("evaluations", []):
        by_task: dict[str, list[dict]] = {}
        for rec in read_records(store.path(entry["key"])):
            by_task.setdefault(rec["task"], []).append(rec)
        entry["ci"] = {task: {metric: _ci([float(r[metric]) for r in recs if metric in r], level, entry["key"], task, metric)
                                for metric in entry["metrics"].get(task, {}) if any(metric in r for r in recs)}
                         for task, recs in by_task.items()}


def table_intervals(results: dict, evidence: Evidence, level: float) -> None:
    """Each table value gets "ci" (and "ci_method"): over seeds when several, else over items."""
    for row in results["table"]["rows"]:
        for task, value in row["values"].items():
            scores = evidence.task_scores(row["model"], row["method"], row["condition"], task)
            if scores is None or value.get("mean") is None:
                value["ci"] = None
                continue
            per_seed = [[v for _, v in sorted(items.items())] for _, items in sorted(
                scores.by_seed.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))]
            s = score_interval(per_seed, level, seed=_seed(*[row[k] for k in ("model", "method", "condition")], task))
            value["ci"], value["ci_method"] = [float(x) for x in s["ci"]], s["method"]


def probe_intervals(results: dict, level: float) -> None:
    """summary[group][ratio]["ci"]: a bootstrap over the group's facts."""
    for entry in results.get("probes", []):
        result = entry["result"]
        for group, ratios in result.get("summary", {}).items():
            facts = [f for f in result.get("facts", []) if group == "all" or f["relation"] == group]
            for ratio, stats in ratios.items():
                values = [float(f[ratio]) for f in facts if ratio in f]
                if values:
                    stats["ci"] = _ci(values, level, entry["key"], group, ratio, bounds=None)


def ablation_intervals(results: dict, level: float) -> None:
    """Each ablation point gets "ci": {task: [low, high]} of the tracked metric (item correctness)."""
    for entry in results.get("ablations", []):
        result = entry["result"]
        points = [p for rows in result.get("sweeps", {}).values() for p in rows] + list(result.get("entries", {}).values())
        for p in points:
            p["ci"] = {task: _ci([float(bool(r.get("correct"))) for r in items], level)
                         for task, items in (p.get("items") or {}).items() if items}


def comparisons(evidence: Evidence, level: float) -> list[dict]:
    """Paired comparisons per model, method and task: trained vs base, and CONDITION_PAIRS."""
    out = []
    for model in evidence.models():
        for method in evidence.methods(model):
            conditions = list(dict.fromkeys(k[2] for k in evidence.scores if k[:2] == (model, method)))
            pairs = [((method, c), BASE) for c in conditions]
            pairs += [((method, a), (method, b)) for a, b in CONDITION_PAIRS if a in conditions and b in conditions]
            for a, b in pairs:
                for task in evidence.tasks():
                    sa, sb = evidence.task_scores(model, *a, task), evidence.task_scores(model, *b, task)
                    paired = pair_items(sa.by_seed, sb.by_seed) if sa and sb else None
                    if paired is None:
                        continue
                    c = paired_comparison(paired[0], paired[1], level, seed=_seed(model, *a, *b, task),
                                          bounds=(0.0, 1.0))
                    out.append({"model": model, "method": method, "task": task, "metric": sa.metric,
                                "a": a[1], "b": b[1], "diff": c["diff"], "ci": [float(x) for x in c["ci"]],
                                "p_value": c["p_value"], "test": c["test"], "n_items": c["n_items"],
                                "n_seeds": c["n_seeds"]})
    return out


def add_uncertainty(results: dict, evidence: Evidence, run_dir, level: float) -> dict:
    """Annotate `results` in place with every interval above and add "comparisons"; returns it."""
    evaluation_intervals(results, run_dir, level)
    table_intervals(results, evidence, level)
    probe_intervals(results, level)
    ablation_intervals(results, level)
    results["comparisons"] = comparisons(evidence, level)
    return results
