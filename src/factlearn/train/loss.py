"""The training loss: summed cross-entropy over real target tokens only, and the packing guard.

The loop divides this sum by the step's total target-token count, so the loss does not depend on how
rows are split into micro-batches or processes.
"""

from __future__ import annotations

from factlearn.train import forgetting
from factlearn.train.data import collate, pack
from factlearn.models import unwrap_peft


def causal_lm_loss_module(model):
    """Wrap `model` so forward returns the summed loss over real target tokens only.

    Calling the decoder for hidden states and projecting only the target positions skips the output
    projection (and its backward) for padding; the result equals the usual shifted cross-entropy.
    """
    import torch
    import torch.nn.functional as F

    class CausalLMLoss(torch.nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.lm = lm
            embed, head = self.base.get_input_embeddings(), self.base.get_output_embeddings()
            tied = type(embed) is torch.nn.Embedding and head is not None and embed.weight is head.weight
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
            # Tied input/output embeddings (SmolLM2): autograd would sum the lookup's gradient and the
            # head's vocabulary-sized one into a fresh tensor every step (see benchmarks/README.md).
            # Instead the lookup reads a detached weight and add_lookup_grads() adds its rows into the
            # head's gradient in place. Not under DDP: its reducer only sees gradients from autograd.
            self.lookup_in_place = tied and embed.weight.requires_grad and not distributed
            self._lookup = None  # (input ids, detached embeddings) of the last forward, until its backward

        @property
        def base(self):
            return unwrap_peft(self.lm)

        def forward(self, input_ids, attention_mask=None, position_ids=None):
            """Padded rows (attention_mask) or packed rows (position_ids restarting at 0 per row)."""
            base = self.base
            inputs = {"input_ids": input_ids}
            if self.lookup_in_place and torch.is_grad_enabled():
                embeds = F.embedding(input_ids, base.get_input_embeddings().weight.detach()).requires_grad_()
                self._lookup = (input_ids, embeds)  # one forward per backward: replaced, never accumulated
                inputs = {"inputs_embeds": embeds}
            hidden = base.get_decoder()(**inputs, attention_mask=attention_mask, position_ids=position_ids,
                                        use_cache=False).last_hidden_state
            if attention_mask is None:  # packed: a token that starts a row is no target of the one before
                carries_loss = position_ids[:, 1:] != 0
            else:
                real = attention_mask.bool()
                carries_loss = real[:, 1:] & real[:, :-1]  # position t predicts token t+1; mask, not token id
            logits = base.get_output_embeddings()(hidden[:, :-1][carries_loss]).float()
            cap = getattr(base.config, "final_logit_softcapping", None)
            if cap:
                logits = torch.tanh(logits / cap) * cap
            return F.cross_entropy(logits, input_ids[:, 1:][carries_loss], reduction="sum")

        def add_lookup_grads(self) -> None:
            """After each backward: add the embedding lookup's gradient into the tied weight's .grad."""
            if self._lookup is None:
                return
            (ids, embeds), self._lookup = self._lookup, None
            weight = self.base.get_input_embeddings().weight
            if weight.grad is None:
                weight.grad = torch.zeros_like(weight)
            if embeds.grad is not None:
                with torch.no_grad():
                    weight.grad.index_add_(0, ids.reshape(-1), embeds.grad.reshape(-1, embeds.shape[-1]))

    return CausalLMLoss(model)


def packing_matches_padding(loss_module, rows: list[list[int]], pad_id: int, device) -> bool:
    """Does this model treat packed rows as separate sequences? Checked once, on a few real rows.

    Why a check: only models whose attention masks come from transformers' masking utilities turn
    restarting position ids into a block-diagonal mask; others would let a row attend to the rows
    before it. The packed loss must equal the padded loss (fp32, no autocast) to use packing.
    """
    import torch

    sample = [r[:16] for r in rows[:3]]
    if len(sample) < 2:
        return True  # one row: packing and padding are the same input
    was_training = loss_module.training
    loss_module.eval()
    try:
        with torch.no_grad():
            ids, mask = collate(sample, pad_id)
            padded = float(loss_module(ids.to(device), attention_mask=mask.to(device)))
            ids, positions = pack(sample)
            packed = float(loss_module(ids.to(device), position_ids=positions.to(device)))
    except (TypeError, ValueError, RuntimeError):  # the model rejects position ids without a mask
        return False
    finally:
        loss_module.train(was_training)
    return abs(packed - padded) <= 1e-4 * max(1.0, abs(padded))


def attention_costs(model) -> tuple[float, float]:
    """(FLOPs per token for the weights, FLOPs per attended query-key pair), for pack_pays_off."""
    base = unwrap_peft(model)
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    return 2.0 * sum(p.numel() for p in base.parameters()), 4.0 * hidden * forgetting.num_layers(base)
