"""Shared fixtures: a tiny random model for unit tests, the real default model for end-to-end ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Never touch the network from tests; hub paths must fail fast and clearly.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised Llama (4 layers, hidden 64) + BPE tokenizer, saved in HF format."""
    from factlearn.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The embedded SmolLM2-135M, converted once into the factlearn cache."""
    from factlearn.models import ensure_converted

    return ensure_converted()
