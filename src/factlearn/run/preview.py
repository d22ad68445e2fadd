"""`factlearn run PROFILE --plan`: every cell of the grid with its predicted time and peak memory per
device on the chosen hardware, whether it fits, and the grid's wall time, before anything is computed.

Nothing is written and no weights are read: the model's config.json gives its shape (estimate.py holds
the time and memory model). The wall time comes from replaying the plan on the hardware: cells in plan
order, each as soon as its upstream cells are finished and a device is free, as run/workers.py schedules
them; under hardware.sharding=fsdp2 a training cell takes all devices, so the training cells are replayed
first, back to back, then the rest.
"""

from __future__ import annotations

from pathlib import Path

from factlearn.run.cells import Cell, CellStore
from factlearn.run.estimate import Hardware, describe, format_bytes
from factlearn.run.grid import GridPlan
from factlearn.run.progress import format_seconds
from factlearn.run.slurm import describe_resources


def wall_seconds(cells: list[Cell], hw: Hardware, done: set[str] = frozenset()) -> float:
    """Predicted wall time of `cells` (plan order) on `hw`; finished cells take no time."""
    free = [0.0] * hw.count  # when each device is next free
    end: dict[str, float] = {}
    if hw.train_devices > 1:  # sharded training cells first, back to back, so none waits for a drained machine
        cells = [c for c in cells if c.kind == "train"] + [c for c in cells if c.kind != "train"]
    for cell in cells:
        ready = max((end.get(d, 0.0) for d in cell.deps), default=0.0)
        seconds = 0.0 if cell.key in done else cell.est_seconds
        if cell.kind == "train" and hw.train_devices > 1:  # sharded: all devices at once
            start = max(ready, *free)
            free = [start + seconds] * hw.count
        else:
            i = min(range(hw.count), key=free.__getitem__)
            start = max(ready, free[i])
            free[i] = start + seconds
        end[cell.key] = start + seconds
    return max(end.values(), default=0.0)


def devices_used(cell: Cell, hw: Hardware) -> int:
    return hw.train_devices if cell.kind == "train" else 1


def render(plan: GridPlan, name: str, run_dir: Path) -> str:
    """The --plan report as text: a header, one line per cell, and the totals."""
    hw = plan.hardware
    store = CellStore(run_dir)
    done = {c.key for c in plan.cells if store.is_done(c.key)}
    lines = [f"factlearn run {name} --plan: {len(plan.cells)} cells on {describe(hw)}"]
    for spec, model in plan.models.items():
        lines.append(f"  model {model.display}: {model.size.stored_params / 1e9:.2f}B parameters, "
                     f"{model.size.num_layers} layers (from {spec})")
    for spec in plan.estimated_tokens:
        lines.append(f"  note: {spec} has no tokenizer here; token counts are estimated as characters / 4")
    width = max((len(c.title) for c in plan.cells), default=10)
    on_slurm = getattr(plan.cfg, "executor", "local") == "slurm"
    lines.append(f"  {'#':>3}  {'cell':<{width}}  {'time':>8}  {'peak/device':>11}  fits"
                 + ("  slurm job (nodes x tasks, cpus/task, mem, gpus, time)" if on_slurm else ""))
    too_big = []
    for i, cell in enumerate(plan.cells, 1):
        fits = cell.est_memory <= hw.memory
        if not fits:
            too_big.append(cell)
        status = "done" if cell.key in done else ("yes" if fits else "NO")
        lines.append(f"  {i:>3}  {cell.title:<{width}}  {format_seconds(cell.est_seconds):>8}  "
                     f"{format_bytes(cell.est_memory):>11}  {status}")
        if on_slurm:  # what the cell's job asks Slurm for
            lines[-1] += " " * (4 - len(status)) + f"  {describe_resources(cell, plan.cfg)}"
    todo = [c for c in plan.cells if c.key not in done]
    device_seconds = sum(c.est_seconds * devices_used(c, hw) for c in todo)
    unit = "GPU" if hw.kind == "cuda" else "worker"
    lines.append(f"time: {format_seconds(device_seconds)} of {unit} time for {len(todo)} cells to compute "
                 f"({len(done)} done); about {format_seconds(wall_seconds(plan.cells, hw, done))} wall on "
                 f"{hw.count} {unit}{'s' if hw.count > 1 else ''}")
    peak = max(plan.cells, key=lambda c: c.est_memory)
    lines.append(f"memory: peak {format_bytes(peak.est_memory)} per device ({peak.title}) of "
                 f"{format_bytes(hw.memory)}: " + ("every cell fits" if not too_big else
                                                   f"{len(too_big)} cells do not fit"))
    if any(c.kind == "train" for c in too_big):
        hint = "shard training over GPUs (hardware.gpus=N hardware.sharding=fsdp2)" if hw.sharding == "none" \
            else "more GPUs, or a smaller batch_size/max_length in the recipe"
        lines.append(f"  training does not fit: {hint}")
    if any(c.kind != "train" for c in too_big):
        lines.append("  evaluation holds the whole model on one device: devices with more memory"
                     + (", or fewer workers" if hw.kind == "cpu" else ""))
    lines.append("nothing computed, nothing written (estimates: src/factlearn/run/estimate.py)")
    return "\n".join(lines)
