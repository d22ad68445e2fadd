"""CCA data: the Country-city-animals schema, a world generator, loaders, export, and a co-occurrence audit.

Importing this package is light (no datasets/torch import); functions import what they need.
"""

from factlearn.data.schema import (CONFIGS, CORPUS_CONFIGS, EVAL_CONFIGS, MC_CONFIGS, RELATION_ANIMAL,
                                   RELATION_CAPITAL, RELATIONS, SPLIT_OF, check_columns, conform, features)
from factlearn.data.world import ANIMALS, Animal, Fact, World, generate_world
from factlearn.data.build import build_cca, build_dataset, build_rows
from factlearn.data.audit import audit_texts
from factlearn.data.load import HUB_ID, audit_corpus, load_cca, load_text_corpus
from factlearn.data.export import export
from factlearn.data.templates import statement_prefix

__all__ = [
    "CONFIGS", "CORPUS_CONFIGS", "EVAL_CONFIGS", "MC_CONFIGS", "RELATION_ANIMAL", "RELATION_CAPITAL", "RELATIONS",
    "SPLIT_OF", "check_columns", "conform", "features", "ANIMALS", "Animal", "Fact", "World", "generate_world",
    "build_cca", "build_dataset", "build_rows", "HUB_ID", "load_cca", "load_text_corpus", "export",
    "statement_prefix", "audit_texts", "audit_corpus",
]

