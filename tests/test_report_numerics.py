"""A run folder whose cells ran under different numerics (threads, device, dtype, versions) says so."""

from __future__ import annotations

import json

from factlearn.report.numerics import UNRECORDED, numerics_summary
from factlearn.versions import NUMERICS_FIELDS, numerics


def _cell(run_dir, key: str, kind: str, values: dict | None) -> dict:
    folder = run_dir / "cells" / key
    folder.mkdir(parents=True)
    info = {"key": key, "kind": kind, **({"numerics": values} if values is not None else {})}
    (folder / "done.json").write_text(json.dumps(info))
    return {"key": key, "kind": kind, "title": key, "done": True}


def test_numerics_of_this_process():
    import torch

    here = numerics("float32")
    assert set(NUMERICS_FIELDS) <= set(here)
    assert here["torch_threads"] == torch.get_num_threads() and here["torch"] == torch.__version__.split("+")[0] \
        or here["torch"].startswith(torch.__version__.split("+")[0])
    assert here["dtype"] == "float32" and here["device"] in ("cpu",) or here["device"].startswith("cuda")


def test_a_folder_with_one_setting_is_not_mixed(tmp_path):
    same = {"torch_threads": 2, "device": "cpu", "dtype": "float32", "torch": "2.13.0", "transformers": "5.0"}
    cells = [_cell(tmp_path, "train-a", "train", same), _cell(tmp_path, "eval-a", "eval", {**same, "dtype": None})]
    out = numerics_summary(tmp_path, cells)
    assert not out["mixed"] and out["note"] is None and out["differing"] == []


def test_a_mixed_folder_names_what_differs(tmp_path):
    """`make run` (2 threads) then `factlearn run workers=2` (1 thread each) into the same folder."""
    seq = {"torch_threads": 2, "device": "cpu", "dtype": "float32", "torch": "2.13.0", "transformers": "5.0"}
    par = {**seq, "torch_threads": 1}
    cells = [_cell(tmp_path, "train-a", "train", seq), _cell(tmp_path, "train-b", "train", par),
             _cell(tmp_path, "eval-a", "eval", par), {"key": "eval-missing", "kind": "eval", "title": "x", "done": False}]
    out = numerics_summary(tmp_path, cells)
    assert out["mixed"] and out["differing"] == ["torch_threads"]
    assert out["by_field"]["torch_threads"] == {"2": 1, "1": 2}
    assert "torch_threads: 2 (1 cells), 1 (2 cells)" in out["note"] and "docs/reproducibility.md" in out["note"]
    # a cell from before numerics were recorded is reported as such, not taken as equal
    out = numerics_summary(tmp_path, cells + [_cell(tmp_path, "eval-old", "eval", None)])
    assert out["by_field"]["device"] == {"cpu": 3, UNRECORDED: 1} and "device" in out["differing"]
    assert out["cells"]["eval-old"] == {}


def test_cells_from_two_cpus_are_mixed_even_at_equal_threads(tmp_path):
    """The same commit and config on an AVX2 and an AVX-512 machine (a shared folder, or Slurm nodes of
    two kinds) trains other weights: the folder must say so, and a cell that predates the field must not
    pass as either."""
    avx512 = {"torch_threads": 2, "device": "cpu", "cpu": "AVX512 (Xeon A)", "dtype": "float32", "torch": "2.13.0",
              "transformers": "5.0"}
    cells = [_cell(tmp_path, "train-a", "train", avx512), _cell(tmp_path, "train-b", "train", {**avx512, "cpu": "AVX2 (Xeon B)"})]
    out = numerics_summary(tmp_path, cells)
    assert out["differing"] == ["cpu"] and "cpu: AVX512 (Xeon A) (1 cells), AVX2 (Xeon B) (1 cells)" in out["note"]
    before = {k: v for k, v in avx512.items() if k != "cpu"}
    out = numerics_summary(tmp_path, [cells[0], _cell(tmp_path, "train-old", "train", before)])
    assert out["by_field"]["cpu"] == {"AVX512 (Xeon A)": 1, UNRECORDED: 1}


def test_this_process_names_its_cpu_kernels():
    import torch

    assert numerics()["cpu"].startswith(torch.backends.cpu.get_cpu_capability())
