"""Layer-wise ablation of what finetuning changed: where in the network does a learned fact live?

Δ = finetuned − base weights. For k = 0 … L we remove Δ (put the base weights back) from the first k
transformer layers ("bottom-up") and, separately, from the last k layers ("top-down"), and evaluate
QA and multiple choice at each k. Paper: after Narrative training QA depends on the middle layers and
MC on the lower ones; after Referencing training both depend on the lower layers.

Parameters are grouped by decoder layer with factlearn.layers' rule (the one active forgetting uses).
Embeddings, the final norm + LM head, and anything else are their own groups ("embeddings", "head",
"other"): the sweeps touch transformer layers only, and separate entries report removing Δ from the
embeddings alone, from the head alone, and from everything (which must reproduce the base model).

Affordable by construction: one model in memory, Δ switched in place (full finetune: copy the kept
base or finetuned tensor back into the parameter, bit-exact both ways; LoRA: disable/enable the
adapter modules of a layer), results cached per removed set (k=0 of both sweeps is one evaluation),
and a fixed evaluation subset (`limit` items per task) with a user-chosen k grid.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from factlearn.atomic import atomic_write_json
from factlearn.errors import UserError
from factlearn.layers import EMBEDDINGS, HEAD, OTHER, decoder_layers_prefix, group_of, layer_group, num_layers
from factlearn.analyze.refine import SWEEPS, check_refine_budget, refine_crossing
from factlearn.evaluate import get_tasks, evaluate

DEFAULT_TASKS = ("Eval_QA", "Eval_multiple_choice")
DEFAULT_LIMIT = 20


class DeltaSwitch:
    """Turns the finetuning change of chosen groups off (base weights) and back on, in place.

    Subclasses know how: full finetune copies kept tensors; LoRA toggles adapter modules.
    `removed` is the current set of groups whose Δ is off.
    """

    kind = "abstract"

    def __init__(self, num_layers: int):
        self.num_layers = num_layers
        self.removed: frozenset[str] = frozenset()

    def groups(self) -> list[str]:
        """Groups that carry a change, layers in index order first."""
        raise NotImplementedError

    def group_stats(self) -> dict[str, dict[str, float]]:
        """Per group: number of changed tensors/elements and the Frobenius norm of Δ."""
        raise NotImplementedError

    def _set(self, group: str, removed: bool) -> None:
        raise NotImplementedError

    def apply(self, removed: set[str] | frozenset[str]) -> None:
        """Make exactly the groups in `removed` base, and all others finetuned."""
        removed = frozenset(removed)
        unknown = removed - set(self.all_group_names())
        if unknown:
            raise UserError(f"unknown ablation group(s) {sorted(unknown)}; known: {self.all_group_names()}")
        for g in self.groups():
            if (g in removed) != (g in self.removed):
                self._set(g, g in removed)
        self.removed = removed

    def restore(self) -> None:
        """Back to the finetuned model."""
        self.apply(frozenset())

    def all_group_names(self) -> list[str]:
        return [layer_group(i) for i in range(self.num_layers)] + [EMBEDDINGS, HEAD, OTHER]

    @contextlib.contextmanager
    def removed_groups(self, groups: set[str] | frozenset[str]) -> Iterator[None]:
        """Within the block the given groups are base; afterwards the finetuned model is back."""
        self.apply(groups)
        try:
            yield
        finally:
            self.restore()


class FullDelta(DeltaSwitch):
    """Δ of a full finetune: keeps the base and finetuned copy of every changed tensor.

    We keep both copies rather than Δ itself so that switching is bit-exact: base + (ft − base) is
    not always ft in floating point, and the k=0 / all-removed checks must reproduce both models exactly.
    """

    kind = "full"

    def __init__(self, model, base_state: dict[str, Any]):
        import torch

        super().__init__(num_layers(model))
        prefix = decoder_layers_prefix(model)
        self._params: dict[str, list[tuple[str, Any, Any, Any]]] = {}
        params = dict(model.named_parameters())  # deduplicated: a tied lm_head appears once, as embeddings
        missing = [n for n in params if n not in base_state]
        if missing:
            raise UserError(f"the base model has no parameter {missing[0]} (and {len(missing) - 1} more); "
                            "pass the base model this one was finetuned from")
        for name, param in params.items():
            base = base_state[name]
            if tuple(base.shape) != tuple(param.shape):
                raise UserError(f"parameter {name} has shape {tuple(param.shape)} but {tuple(base.shape)} in the "
                                "base model; pass the base model this one was finetuned from")
            base = base.to(device=param.device, dtype=param.dtype)
            if torch.equal(base, param.data):
                continue  # unchanged by finetuning: nothing to switch
            entry = (name, param, base.clone(), param.data.clone())
            self._params.setdefault(group_of(name, prefix), []).append(entry)

    def groups(self) -> list[str]:
        return [g for g in self.all_group_names() if g in self._params]

    @staticmethod
    def from_models(model, base_model) -> "FullDelta":
        """Build from two loaded models of the same architecture (the base is only read)."""
        state = {n: p.detach() for n, p in base_model.named_parameters()}
        return FullDelta(model, state)

    def _set(self, group: str, removed: bool) -> None:
        import torch

        with torch.no_grad():
            for _, param, base, finetuned in self._params[group]:
                param.data.copy_(base if removed else finetuned)

    def group_stats(self) -> dict[str, dict[str, float]]:
        stats = {}
        for g in self.groups():
            entries = self._params[g]
            delta_sq = sum(float(((ft.double() - b.double()) ** 2).sum()) for _, _, b, ft in entries)
            base_sq = sum(float((b.double() ** 2).sum()) for _, _, b, _ in entries)
            stats[g] = {"tensors": len(entries), "elements": sum(b.numel() for _, _, b, _ in entries),
                        "delta_norm": delta_sq ** 0.5, "relative_delta_norm": (delta_sq / base_sq) ** 0.5 if base_sq else 0.0}
        return stats


class LoraDelta(DeltaSwitch):
    """Δ of a LoRA finetune is the adapters: removing it from a layer disables that layer's adapters.

    A disabled peft LoRA module runs only its base layer, so with every adapter off the forward pass
    is the base model's, exactly.
    """

    kind = "lora"

    def __init__(self, peft_model):
        from peft.tuners.tuners_utils import BaseTunerLayer

        super().__init__(num_layers(peft_model))
        prefix = decoder_layers_prefix(peft_model)
        self._modules: dict[str, list[tuple[str, Any]]] = {}
        for name, module in peft_model.named_modules():
            if isinstance(module, BaseTunerLayer):
                self._modules.setdefault(group_of(name, prefix), []).append((name, module))
        if not self._modules:
            raise UserError("the model has no LoRA adapter modules; for a full finetune pass --base "
                            "with the model it was finetuned from")
        self._requires_grad = {id(p): p.requires_grad for _, m in self._all() for p in m.parameters()}

    def _all(self):
        for entries in self._modules.values():
            yield from entries

    def groups(self) -> list[str]:
        return [g for g in self.all_group_names() if g in self._modules]

    def _set(self, group: str, removed: bool) -> None:
        for _, module in self._modules[group]:
            module.enable_adapters(not removed)
            # enable_adapters(True) makes adapter weights trainable; keep the flags as loaded.
            for p in module.parameters():
                p.requires_grad_(self._requires_grad[id(p)])

    def group_stats(self) -> dict[str, dict[str, float]]:
        import torch

        stats = {}
        with torch.no_grad():
            for g in self.groups():
                delta_sq, elements = 0.0, 0
                for _, module in self._modules[g]:
                    for adapter in getattr(module, "active_adapters", []):
                        if hasattr(module, "get_delta_weight") and adapter in getattr(module, "lora_A", {}):
                            d = module.get_delta_weight(adapter).double()
                            delta_sq += float((d ** 2).sum())
                            elements += d.numel()
                stats[g] = {"tensors": len(self._modules[g]), "elements": elements, "delta_norm": delta_sq ** 0.5}
        return stats


def delta_switch(model, base_model=None) -> DeltaSwitch:
    """LoRA when `model` is a peft model, else a full Δ against `base_model` (required then)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        return LoraDelta(model)
    if base_model is None:
        raise UserError("a full finetune needs its base model to compute Δ; pass --base MODEL")
    return FullDelta.from_models(model, base_model)


def k_grid(num_layers: int, k_step: int | None = None, ks: Sequence[int] | None = None) -> list[int]:
    """The k values to evaluate: an explicit list, or every `k_step`-th k from 0 (L always included)."""
    if ks is not None and k_step is not None:
        raise UserError("give either a k step or an explicit k grid, not both")
    if ks is not None:
        bad = [k for k in ks if not 0 <= int(k) <= num_layers]
        if bad or not ks:
            raise UserError(f"k grid {list(ks)} must be non-empty with values in 0..{num_layers} (the model has "
                            f"{num_layers} layers)")
        return sorted({int(k) for k in ks})
    step = 1 if k_step is None else int(k_step)
    if step < 1:
        raise UserError(f"k step must be >= 1, got {step}")
    return sorted(set(range(0, num_layers + 1, step)) | {num_layers})


def headline_metric(task: str) -> str:
    """The metric an ablation tracks for a task: the task's headline metric (factlearn.evaluate.tasks)."""
    return get_tasks([task])[0].headline_metric


@dataclass
class AblationResult:
    """Evaluations of the model with Δ removed from various groups; JSON-serialisable."""

    model: str
    base: str
    corpus: str
    kind: str
    num_layers: int
    tasks: list[str]
    limit: int | None
    num_fewshot: int
    k_grid: list[int]
    group_stats: dict[str, dict[str, float]]
    tied_embeddings: bool
    # sweep name -> [{"k", "removed": [groups], "metrics": {task: {metric: value}}, "items": ...}]
    sweeps: dict[str, list[dict]] = field(default_factory=dict)
    # entry name -> {"removed": [groups], "metrics": ..., "items": ...}: finetuned, embeddings, head, all (= base)
    entries: dict[str, dict] = field(default_factory=dict)
    # sweep -> analyze/refine.py's crossing interval after refinement (refined rows carry "refined": True)
    refinement: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def save_json(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "AblationResult":
        return cls(**d)

    def series(self, sweep: str, task: str, metric: str | None = None) -> tuple[list[int], list[float]]:
        rows = self.sweeps[sweep]
        metric = metric or headline_metric(task)
        return [r["k"] for r in rows], [r["metrics"][task][metric] for r in rows]


def run_ablation(model, tokenizer, switch: DeltaSwitch, *, data, tasks: Sequence[str] = DEFAULT_TASKS,
                 limit: int | None = DEFAULT_LIMIT, ks: Sequence[int] | None = None, num_fewshot: int = 5,
                 batch_size: int = 16, model_name: str = "model", base_name: str = "base",
                 corpus: str = "corpus", progress: Callable[[str], None] | None = None,
                 refine_budget: int | None = None) -> AblationResult:
    """Evaluate bottom-up and top-down removal of Δ for each k, plus the embeddings/head/all entries.

    `data` is what factlearn.evaluate.evaluate takes (a DatasetDict keyed by config name, or a source).
    The model is left exactly finetuned afterwards, even if an evaluation fails. `refine_budget`: at
    most that many extra evaluations narrow each sweep's crossing of the first task (analyze/refine.py).
    """
    if refine_budget is not None:
        check_refine_budget(refine_budget)
    L = switch.num_layers
    ks = list(ks) if ks is not None else k_grid(L)
    cache: dict[frozenset[str], dict] = {}

    def eval_removed(removed: set[str], label: str) -> dict:
        """{"metrics", "items"} of the model with Δ removed from `removed`; cached per removed set."""
        key = frozenset(removed) & frozenset(switch.groups())  # removing an unchanged group is a no-op
        if key not in cache:
            if progress:
                progress(f"ablation: {label} ({len(key)} group(s) reset to base)")
            with switch.removed_groups(key):
                result = evaluate(model, tokenizer, tasks=list(tasks), data=data, num_fewshot=num_fewshot,
                                  limit=limit, batch_size=batch_size)
            cache[key] = {"metrics": result.metrics, "items": item_scores(result.records)}
        return cache[key]

    layers = [layer_group(i) for i in range(L)]
    out = AblationResult(model=model_name, base=base_name, corpus=corpus, kind=switch.kind, num_layers=L,
                         tasks=list(tasks), limit=limit, num_fewshot=num_fewshot, k_grid=ks,
                         group_stats=switch.group_stats(), tied_embeddings=_tied(model))
    try:
        for sweep, pick in (("bottom_up", lambda k: layers[:k]), ("top_down", lambda k: layers[L - k:])):
            rows = []
            for k in ks:
                removed = pick(k)
                rows.append({"k": k, "removed": removed, **eval_removed(set(removed), f"{sweep} k={k}")})
            out.sweeps[sweep] = rows
        for name, removed in (("finetuned", []), ("embeddings", ["embeddings"]), ("head", ["head"]),
                              ("all", switch.all_group_names())):
            out.entries[name] = {"removed": removed, **eval_removed(set(removed), f"remove {name}")}
        if refine_budget:
            _refine(out, tasks[0], refine_budget, layers, eval_removed)
    finally:
        switch.restore()
    return out


def _refine(out: AblationResult, task: str, budget: int, layers: list[str], eval_removed) -> None:
    """Narrow both sweeps' crossings of `task` with at most `budget` extra evaluations in all."""
    metric = headline_metric(task)
    L = out.num_layers
    mid = (out.entries["finetuned"]["metrics"][task][metric] + out.entries["all"]["metrics"][task][metric]) / 2
    picks = {"bottom_up": lambda k: layers[:k], "top_down": lambda k: layers[L - k:]}
    for sweep in SWEEPS:
        rows = out.sweeps[sweep]
        by_k = {r["k"]: r for r in rows}

        def score_at(k: int, sweep=sweep, by_k=by_k) -> float:
            removed = picks[sweep](k)
            by_k[k] = {"k": k, "removed": removed, "refined": True,
                       **eval_removed(set(removed), f"{sweep} k={k} (refining)")}
            return by_k[k]["metrics"][task][metric]

        left = budget - sum(r.get("evaluations", 0) for r in out.refinement.values())
        ref = refine_crossing(score_at, {k: r["metrics"][task][metric] for k, r in by_k.items()}, mid, L,
                              max(left, 1) if left > 0 else 1, sweep) if left > 0 else None
        if ref is not None:
            ref.pop("scores")
            out.refinement[sweep] = {"task": task, "midpoint": mid, **ref}
        out.sweeps[sweep] = [by_k[k] for k in sorted(by_k)]


def item_scores(records: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Per item: prediction, correctness and (MC) the choice log-likelihoods; prompts are dropped.

    Kept so one can see which items flip at which k, and check exactly that k=0 is the finetuned model.
    """
    keep = ("doc_index", "prediction", "correct", "logliks")
    return {task: [{k: r[k] for k in keep if k in r} for r in rows] for task, rows in records.items()}


def _tied(model) -> bool:
    try:
        return model.get_output_embeddings().weight is model.get_input_embeddings().weight
    except AttributeError:
        return False
