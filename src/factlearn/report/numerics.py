"""Does a run folder mix cells computed under different numerics?

Cell keys hash the config, not the numerics (thread count, device, CPU kernel family, dtype, torch /
transformers versions), so a folder can hold cells from a sequential run (all cores per cell) next to
cells from `workers=2` (half the threads), or from another machine. Those cells are reused as if equal, but
training under other numerics gives other weights (docs/reproducibility.md measures by how much), so
the report says when the finished cells disagree on any of them, and which cells ran under which.
Each cell's numerics are in its done.json (`numerics`, written by the cell store); cells written
before that was recorded count as "not recorded".
"""

from __future__ import annotations

from pathlib import Path

from factlearn.versions import NUMERICS_FIELDS

UNRECORDED = "not recorded"


def numerics_summary(run_dir: str | Path, cells: list[dict]) -> dict:
    """{"mixed": bool, "by_field": {field: {value: n_cells}}, "cells": {key: numerics}, "note": str | None}.

    `cells` are collect_results' cell entries ({"key", "kind", "title", "done"}); the kinds that compute
    with the model (train, eval, control, probe, ablate) are all compared."""
    from factlearn.run.cells import CellStore

    store = CellStore(run_dir)
    recorded: dict[str, dict] = {}
    by_field: dict[str, dict[str, int]] = {f: {} for f in NUMERICS_FIELDS}
    for cell in cells:
        if not cell.get("done"):
            continue
        values = store.info(cell["key"]).get("numerics")
        recorded[cell["key"]] = values or {}
        for f in NUMERICS_FIELDS:
            # dtype is a training setting: only train cells have one
            if f == "dtype" and cell.get("kind") != "train":
                continue
            value = str(values[f]) if values and f in values else UNRECORDED  # a field added later: not recorded
            by_field[f][value] = by_field[f].get(value, 0) + 1
    differing = {f: counts for f, counts in by_field.items() if len(counts) > 1}
    note = None
    if differing:
        parts = "; ".join(f"{f}: " + ", ".join(f"{v} ({n} cells)" for v, n in counts.items())
                          for f, counts in differing.items())
        note = ("This run folder mixes cells computed under different numerics (" + parts + "). Cell keys do not "
                "include them, so such cells were reused as equal, but training under other numerics gives other "
                "weights and can move a verdict; rerun into a fresh --out folder for one setting "
                "(docs/reproducibility.md).")
    return {"mixed": bool(differing), "by_field": by_field, "differing": sorted(differing), "cells": recorded,
            "note": note}
