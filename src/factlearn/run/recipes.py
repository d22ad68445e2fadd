"""A run's recipes resolved once: the validated TrainConfig of every (method, corpus) the grid trains.

A recipe is written as a train config name plus `key=value` overrides (the same spelling as `factlearn
train`), and a corpus may add its own. They are parsed and checked here, when the run config loads, so a
bad override fails before planning and every training cell starts from typed data; a cell only sets what
is its own (model, seed, forgetting layer: run/training.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from factlearn.config import load_config
from factlearn.errors import UserError
from factlearn.train.config import TrainConfig


def resolve_recipes(cfg: Any) -> dict[str, dict[str, TrainConfig]]:
    """method -> corpus -> TrainConfig: the method's recipe, then the corpus's overrides, then the run's
    world, method and device; checked once. `cfg` is the RunConfig being loaded (not imported here:
    run/config.py calls this module)."""
    resolved: dict[str, dict[str, TrainConfig]] = {}
    for method in cfg.methods:
        recipe = cfg.recipes[method]
        resolved[method] = {}
        for corpus in cfg.corpora:
            train_cfg = load_config(TrainConfig, "train", recipe.config,
                                    list(recipe.overrides) + cfg.corpus_overrides.of(corpus))
            train_cfg = dataclasses.replace(train_cfg, subset=corpus, n_countries=cfg.n_countries,
                                            data_seed=cfg.world_seed, method=method, device=cfg.device)
            if cfg.data_source:  # its world is fixed by the source: n_countries (generator only) must not split the cache
                train_cfg.data_source = cfg.data_source
                train_cfg.n_countries = TrainConfig.n_countries
            train_cfg.check()
            if forgets(cfg, method, corpus) and train_cfg.forget.at_epoch is not None:
                raise UserError(f"recipes.{method} sets forget.at_epoch, but the run's forgetting continues from the "
                                f"plain run's weights; remove forget.at_epoch from recipes.{method}.overrides")
            resolved[method][corpus] = train_cfg
    return resolved


def forgets(cfg: Any, method: str, corpus: str) -> bool:
    """Whether the grid trains `method` on `corpus` a second time with active forgetting."""
    return cfg.forgetting.enabled and method in cfg.forgetting.methods and corpus in cfg.forgetting.corpora
