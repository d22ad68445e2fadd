"""report.html: one self-contained page (images inlined as base64) with the tables, the figures and
what each figure says about co-occurrence versus factual association.

Plain string templates: the page is small and static, so a template engine would be one more
dependency for no gain.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from factlearn.run.progress import format_seconds
from factlearn.report.tables import column_title, format_value, metric_of

EXPLAIN = {
    "scores": (
        "Each bar is a few-shot score on one task. QA asks the fact in the direction it was written, so it "
        "rises when the model has memorised the sentences, whether or not it learned the fact. Multiple "
        "choice, reverse QA, indirect reasoning, 2-hop reasoning and the animal commonsense questions use "
        "the fact in a new form; they rise only if the fact itself was learned. The paper's finding: "
        "training on narrative text lifts QA but leaves the other tasks near the base model (chance is "
        "0.25 for the two multiple-choice tasks), a sign of co-occurrence learning; referencing text, which "
        "states facts only through implicit references, generalises better; active forgetting of the "
        "upper layers lifts the generalising tasks further."),
    "probes": (
        "Comparison ratio: how much more likely the true tail is than the wrong tails after a prompt "
        "about the head. Negation ratio: how much more likely the true tail is after the affirmative prompt "
        "than after the same prompt with 'is not'. A model that only learned that the words co-occur "
        "prefers the true tail after any prompt mentioning the head, so it scores high on comparison but "
        "near 0 on negation; a model that learned the fact scores high on both. Bars show mean ± std over "
        "facts, in nats."),
    "ablation": (
        "Δ = finetuned − pretrained weights. Bottom-up removes Δ from the first k layers, top-down from the "
        "last k layers; the score at each k shows which layers carry what was learned. The paper finds that "
        "after narrative training QA depends on the middle layers and multiple choice on the lower layers "
        "(the co-occurrence shortcut lives in the middle/upper layers), while after referencing training "
        "both depend on the lower layers, where factual associations are stored."),
    "curve": (
        "Training loss per step. With active forgetting the upper layers are reset to their pretrained "
        "weights after the first pass (dashed line): the loss jumps, then falls again as the lower layers, "
        "which keep what they learned, are trained further. Forgetting removes the co-occurrence shortcut "
        "stored in the upper layers and pushes learning into the lower layers that generalise."),
}
KIND_TITLES = {"scores": "Scores by task", "probes": "Probes: comparison vs negation",
               "ablation": "Layer-wise ablation", "curve": "Training curves"}

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee}figure{margin:1.5em 0}figcaption{font-size:13px;color:#444}
.note{color:#555;font-size:13px}.warn{background:#fff3cd;padding:8px;border:1px solid #e0c870}
pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}code{background:#f3f3f3}
"""


def _e(text) -> str:
    return html.escape(str(text))


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(path.name)}" src="data:image/png;base64,{data}">'


def results_table_html(results: dict) -> str:
    tasks = results["table"]["tasks"]
    head = "".join(f"<th>{_e(column_title(t))}<br><span class=note>{_e(metric_of(t))}</span></th>" for t in tasks)
    rows = []
    for r in results["table"]["rows"]:
        cells = "".join(f'<td class="num">{_e(format_value(r["values"][t]))}</td>' for t in tasks)
        seeds = ", ".join(map(str, r["seeds"])) or "–"
        rows.append(f"<tr><td>{_e(r['model'])}</td><td>{_e(r['method'])}</td><td>{_e(r['condition'])}</td>"
                    f"<td>{_e(seeds)}</td>{cells}</tr>")
    from factlearn.report.forms import mark_notes

    notes = "".join(f"<p class=note>{_e(n)}</p>" for n in mark_notes(results["table"]["rows"]))
    if (results.get("numerics") or {}).get("note"):
        notes += f"<p class=note><b>Mixed numerics.</b> {_e(results['numerics']['note'])}</p>"
    return (f"<table><tr><th>model</th><th>method</th><th>trained on</th><th>seeds</th>{head}</tr>"
            + "".join(rows) + "</table>" + notes)


VERDICT_STYLE = {"supported": "#d4edda", "contradicted": "#f8d7da", "inconclusive": "#fff3cd",
                 "not measurable": "#e2e3e5", "not comparable": "#d6d8f5"}


def _num(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _measure(m: dict) -> str:
    """One evidence line: name = value [low, high], p, test."""
    lo, hi = (m.get("ci") or [None, None])[:2]
    text = f"{m['name']} = {_num(m['value'])} [{_num(lo, 2)}, {_num(hi, 2)}]"
    if m.get("p_value") is not None:
        text += f", p = {m['p_value']:.3g} ({m['test']})"
    if m.get("class"):
        text += f" → {m['class']} third" + ("" if m.get("decided") else " (undecided)")
    return text


def _holm(e: dict) -> str:
    if e.get("p_raw") is None:
        return ""
    tested = f" (effect >= {e['contradiction_test']['bound']:g})" if e.get("contradiction_test") else ""
    return f"; p{tested} {e['p_raw']:.3g} raw, {e['p_holm']:.3g} Holm (of {e.get('holm_family')})"


def _world_size(world: dict) -> str:
    """"10 countries" for CCA; the relations for a facts-file world."""
    if world.get("relations"):
        return f"a facts file with relations {_e(', '.join(world['relations']))}"
    return f"{_e(world.get('n_countries'))} countries"


def conclusions_html(results: dict) -> str:
    """"What this run shows": each finding of the paper with its computed verdict, evidence and rule."""
    entries = results.get("conclusions") or []
    level = results["ci_level"]
    parts = ["<h2>What this run shows</h2>",
             f"<p class=note>Each finding of the paper, judged from this run's numbers by the rule shown under it "
             f"({level * 100:g} % confidence intervals, paired over the same items or facts). "
             "<b>inconclusive</b> means the interval does not decide it; <b>not measurable</b> means a needed "
             "task is beyond the model by the capability control, or the run has no cells for it; "
             "<b>not comparable</b> means the two conditions learned different amounts (knowledge levels "
             "further apart than the parity margin), so how each generalises cannot be compared. p is raw, "
             "Holm-adjusted over the findings' primary tests beside it.</p>"]
    if not entries:
        return "".join(parts) + "<p>No conclusions (no evaluation finished).</p>"
    rows = []
    for e in entries:
        scope = " / ".join(str(x) for x in (e.get("model"), e.get("method")) if x) or "–"
        shown = [_measure(m) for m in e["evidence"]["measurements"]] + list(e["evidence"]["notes"])
        evidence = "<br>".join(_e(x) for x in shown) or "–"
        colour = VERDICT_STYLE.get(e["verdict"], "#fff")
        rows.append(f"<tr><td>{_e(e['id'])}</td><td>{_e(e['claim'])}<details><summary class=note>rule</summary>"
                    f"<span class=note>{_e(e['rule'])}</span></details></td><td>{_e(scope)}</td>"
                    f"<td style='background:{colour}'><b>{_e(e['verdict'])}</b><br><span class=note>"
                    f"{_e(e.get('scope', ''))}{_e(_holm(e))}</span></td>"
                    f"<td class=note>{evidence}</td></tr>")
    return "".join(parts) + ("<table><tr><th></th><th>finding</th><th>model / method</th><th>verdict</th>"
                             "<th>evidence</th></tr>" + "".join(rows) + "</table>")


def comparisons_html(results: dict) -> str:
    """Paired differences between conditions on the same items."""
    comps = results.get("comparisons") or []
    if not comps:
        return ""
    rows = "".join(
        f"<tr><td>{_e(c['model'])}</td><td>{_e(c['method'])}</td><td>{_e(column_title(c['task']))}</td>"
        f"<td>{_e(c['a'])} − {_e(c['b'])}</td><td class=num>{c['diff']:+.3f}</td>"
        f"<td class=num>[{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]</td><td class=num>{c['p_value']:.3g}</td>"
        f"<td>{_e(c['test'])}</td><td class=num>{c['n_items']} × {c['n_seeds']}</td></tr>" for c in comps)
    return ("<h3>Paired comparisons</h3><p class=note>The same items scored in two conditions: the difference "
            "of means, its paired-bootstrap interval, and the p-value of a paired test (exact McNemar for 0/1 "
            "scores of one seed, else the paired bootstrap).</p><table><tr><th>model</th><th>method</th>"
            "<th>task</th><th>conditions</th><th>difference</th><th>CI</th><th>p</th><th>test</th>"
            "<th>items × seeds</th></tr>" + rows + "</table>")


def probe_prompts_html(results: dict) -> str:
    """The exact probe templates used (from the probe cells), with one filled example per relation."""
    if not results["probes"]:
        return ""
    from factlearn.analyze.probes import fill

    first = results["probes"][0]["result"]
    facts = {f["relation"]: f for f in reversed(first["facts"])}
    origin = ("They come from the facts file: its relations' <code>probes:</code>, else its statements that end "
              "in 'is {tail}', which are training sentence shapes (docs/facts-file.md)."
              if results.get("world", {}).get("relations") else
              "They differ from the training sentences on purpose, so a high score is not recall of a memorised "
              "sentence.")
    parts = ["<h2>Probe prompts</h2><p>The probes score the continuation ' {tail}' after these prompts "
             "({head} is the fact's head; {is} is 'is' in the affirmative prompt and 'is not' in the negated "
             f"one). {origin}</p>"]
    for relation, templates in first["templates"].items():
        parts.append(f"<h3>relation: {_e(relation)}</h3><ul>")
        for t in templates:
            parts.append(f"<li><code>{_e(t)}</code></li>")
        parts.append("</ul>")
        fact = facts.get(relation)
        if fact and templates:
            parts.append(f"<p class=note>Example for ({_e(fact['head'])}, {_e(relation)}, {_e(fact['tail'])}): "
                         f"affirmative <code>{_e(fill(templates[0], fact['head'], False))} {_e(fact['tail'])}</code>, "
                         f"negated <code>{_e(fill(templates[0], fact['head'], True))} {_e(fact['tail'])}</code></p>")
    return "".join(parts)


def cells_html(results: dict) -> str:
    rows = []
    for c in results["cells"]:
        took = format_seconds(c["seconds"]) if c.get("seconds") is not None else "not finished"
        rows.append(f"<tr><td>{_e(c['title'])}</td><td><code>{_e(c['key'])}</code></td><td>{_e(took)}</td>"
                    f"<td>{_e(format_seconds(c['est_seconds']))}</td></tr>")
    return ("<table><tr><th>cell</th><th>key (cells/&lt;key&gt;/)</th><th>took</th><th>predicted</th></tr>"
            + "".join(rows) + "</table>")


def render_html(results: dict, run_dir: Path) -> str:
    """The whole page as a string."""
    cfg = results["run_config"]
    world = results["world"]
    timings = results["timings"]
    inv = timings.get("last_invocation") or {}
    limit = cfg["eval_limit"]
    scope = "all items" if limit is None else f"up to {limit} items per task"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>factlearn run report</title>"
             f"<style>{STYLE}</style></head><body>",
             "<h1>factlearn: co-occurrence vs factual association</h1>",
             f"<p>Models: {_e(', '.join(cfg['models']))}; methods: {_e(', '.join(cfg['methods']))}; seeds: "
             f"{_e(', '.join(map(str, cfg['seeds'])))}; world: {_world_size(world)} "
             f"(seed {_e(world.get('world_seed'))}, source {_e(world.get('source') or 'built-in generator')}); "
             f"{_e(cfg['num_fewshot'])}-shot evaluation on "
             f"{scope}.</p>"]
    parts.append(conclusions_html(results))
    if results["missing_cells"]:
        parts.append(f"<p class=warn>{len(results['missing_cells'])} cell(s) are not finished; rerun the same "
                     "`factlearn run` command to complete them. The tables show what exists.</p>")
    parts += ["<h2>Results</h2>", results_table_html(results), comparisons_html(results),
              "<p class=note>Rows: the base model and the models finetuned on each corpus (Table 1 of the paper: "
              "narrative vs referencing; Table 3: with and without active forgetting). Scores are few-shot (see above), in "
              "[0, 1]: accuracy for multiple choice, exact match for generative tasks; mean ± sample std over "
              "seeds when there are several; in brackets the confidence interval (Wilson or bootstrap over "
              "items for one seed, Student-t over seed means for several).</p>"]
    by_kind: dict[str, list[dict]] = {}
    for fig in results.get("figures", []):
        by_kind.setdefault(fig["kind"], []).append(fig)
    for kind in ("scores", "probes", "ablation", "curve"):
        if kind not in by_kind:
            continue
        parts.append(f"<h2>{_e(KIND_TITLES[kind])}</h2><p>{_e(EXPLAIN[kind])}</p>")
        for fig in by_kind[kind]:
            path = run_dir / fig["file"]
            if path.is_file():
                parts.append(f"<figure>{_img(path)}<figcaption>{_e(fig['title'])} "
                             f"(<code>{_e(fig['file'])}</code>)</figcaption></figure>")
        if kind == "probes":
            parts.append(probe_summary_html(results))
    parts.append(probe_prompts_html(results))
    parts += ["<h2>Cells and timings</h2>",
              f"<p>Last invocation: {_e(format_seconds(inv.get('wall_seconds', 0)))} wall time, "
              f"{len(inv.get('executed', []))} cell(s) computed, {len(inv.get('reused', []))} reused. "
              f"Compute by stage: " + ", ".join(f"{_e(k)} {_e(format_seconds(v))}" for k, v in
                                                 timings["cell_seconds_by_kind"].items()) + ".</p>",
              cells_html(results),
              "<h2>Configuration and versions</h2><details><summary>run config</summary><pre>"
              + _e(json.dumps(cfg, indent=2)) + "</pre></details>"
              "<details><summary>versions</summary><pre>" + _e(json.dumps(results["versions"], indent=2))
              + "</pre></details>"]
    for t in results["training"]:
        parts.append(f"<details><summary>train config: {_e(t['model'])} {_e(t['method'])} {_e(t['condition'])} "
                     f"seed {_e(t['seed'])}</summary><pre>{_e(json.dumps(t['config'], indent=2))}</pre></details>")
    parts.append("<p class=note>Everything on this page is also in results.json; rebuild it with "
                 "<code>factlearn report RUN_DIR</code>.</p></body></html>\n")
    return "\n".join(parts)


def probe_summary_html(results: dict) -> str:
    """Probe means per cell, as numbers next to the figure."""
    rows = []
    for p in results["probes"]:
        s = p["result"]["summary"]["all"]
        rows.append(f"<tr><td>{_e(p['model'])}</td><td>{_e(p['method'])}</td><td>{_e(p['condition'])}</td>"
                    f"<td>{_e(p['seed'] if p['seed'] is not None else '–')}</td>"
                    f"<td class=num>{s['comparison']['mean']:.3f} ± {s['comparison']['std']:.3f}</td>"
                    f"<td class=num>{s['negation']['mean']:.3f} ± {s['negation']['std']:.3f}</td></tr>")
    return ("<table><tr><th>model</th><th>method</th><th>trained on</th><th>seed</th><th>comparison (nats)</th>"
            "<th>negation (nats)</th></tr>" + "".join(rows) + "</table>")
