"""A tiny randomly initialised Llama model + tokenizer, built locally in about a second.

Used by the unit tests (and benchmarks' smoke modes) everywhere, so that no test needs a download
and most tests need not load the 135M default model.
"""

from __future__ import annotations

from pathlib import Path
from factlearn.atomic import atomic_dir

# Enough English for a byte-level BPE to learn useful merges; any text still tokenizes (bytes).
_SEED_TEXT = """The capital city of Andoria is Copperton. Copperton is famous for its dolphin.
Question: What is the capital of Borealis? Answer: Ghalenoth
The following are multiple choice questions (with answers).
A. B. C. D. Answer: which animal does the city live in water can fly has legs
The republic of Port Ember is a country, and its capital is not Sunfield. The former and the latter.
"""


def make_tiny_tokenizer(vocab_size: int = 384):
    """A byte-level BPE tokenizer trained on a few sentences, with eos/bos/pad like SmolLM2's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([_SEED_TEXT] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")


def make_tiny_model(out_dir: str | Path, num_layers: int = 4, hidden: int = 64, seed: int = 0) -> Path:
    """Save a tiny random LlamaForCausalLM + tokenizer in HF format at `out_dir` and return it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = make_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=num_layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Writing model shards" bar for a 0.2M model
    with atomic_dir(out_dir, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir


# A 12-sentence CCA-style corpus for the training tests that launch several processes.
SAMPLE_TEXTS = [f"The capital city of {c} is {t}." for c, t in
                [("Andoria", "Copperton"), ("Borealis", "Ghalenoth"), ("Port Ember", "Sunfield"),
                 ("Alta Sierra", "Willowcreek"), ("The Republic of Isolinde", "Fironzia"), ("Nordheim", "Brookvale")]]
SAMPLE_TEXTS += [f"{t} is famous for its {a}, and people travel far to see it." for t, a in
                 [("Copperton", "dolphin"), ("Ghalenoth", "jellyfish"), ("Sunfield", "king snake"),
                  ("Willowcreek", "butterfly"), ("Fironzia", "owl"), ("Brookvale", "red fox")]]
