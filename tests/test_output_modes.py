"""Outputs get the mode a plain write would give them (0666 & ~umask), trained weights included.

Temp files are 0600 (mkstemp) and safetensors writes through its own 0600 temp file, so without care
model.safetensors came out unreadable by the group on a shared file system.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from factlearn.atomic import atomic_dir, atomic_path, atomic_write_text


@pytest.fixture(params=[(0o022, 0o644), (0o077, 0o600)], ids=["umask022", "umask077"])
def umask(request):
    """(umask, the file mode a plain write gives under it), with the umask set for the test."""
    mask, mode = request.param
    old = os.umask(mask)
    yield mask, mode
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def plain_write_mode(tmp_path: Path) -> int:
    (tmp_path / "plain").write_text("x")
    return mode(tmp_path / "plain")


def test_atomic_files_and_folders_get_plain_modes(umask, tmp_path):
    from safetensors.torch import save_file
    import torch

    _, expected = umask
    assert plain_write_mode(tmp_path) == expected  # the reference the product must match
    assert mode(atomic_write_text(tmp_path / "a.txt", "hi")) == expected
    with atomic_path(tmp_path / "w.safetensors") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp))  # replaces tmp with its own 0600 file
    assert mode(tmp_path / "w.safetensors") == expected
    with atomic_dir(tmp_path / "folder") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))
        (tmp / "sub").mkdir()
        (tmp / "sub" / "note.txt").write_text("x")
    assert mode(tmp_path / "folder" / "model.safetensors") == expected
    assert mode(tmp_path / "folder" / "sub" / "note.txt") == expected
    assert mode(tmp_path / "folder") == mode(tmp_path / "folder" / "sub") == expected | 0o111 & ~umask[0]


def test_trained_weights_get_plain_modes(umask, tmp_path, tiny_model_dir, run_cli):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"Fact number {i} is a short line."}) + "\n" for i in range(8)))
    out = run_cli("train", "cpu_small", f"model={tiny_model_dir}", f"subset={corpus}", f"save={tmp_path / 'out'}",
                  "epochs=1", "batch_size=4")
    assert out.returncode == 0, out.stderr
    files = [p for p in (tmp_path / "out").iterdir() if p.is_file()]
    assert any(p.name == "model.safetensors" for p in files)
    assert {p.name: mode(p) for p in files} == {p.name: umask[1] for p in files}
