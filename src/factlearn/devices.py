"""Device and dtype choice for loading a model: one rule for every command."""

from __future__ import annotations

from factlearn.errors import UserError

# torch is imported inside the functions: importing this module must stay cheap for the CLI.


def pick_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'. Anything else is passed to torch as is."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' requested but no CUDA GPU is visible; use device=cpu or device=auto")
    return device


def pick_dtype(dtype: str = "auto", device: str = "cpu"):
    """'auto' -> bf16 on CUDA, fp32 on CPU (bf16 matmuls are slow on most CPUs)."""
    import torch

    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in table:
        raise UserError(f"unknown dtype '{dtype}'; use one of: auto, {', '.join(table)}")
    return table[dtype]
