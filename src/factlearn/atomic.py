"""Atomic writes: every file factlearn writes goes through here.

A writer killed midway must leave either the old file or the new one, never a truncated file, and a
half-built folder must never look finished. We write into a temporary sibling (same folder, so the
final rename is atomic on POSIX) and `os.replace` it into place only once complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from factlearn.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def plain_mode(path: Path) -> None:
    """Give `path` the mode a plain open() would: 0666 & ~umask (0777 for folders and executables).

    Temp files (mkstemp) are 0600, and some libraries write through their own 0600 temp file
    (safetensors' save_file); without this the finished output would be unreadable by the group.
    """
    executable = path.is_dir() or path.stat().st_mode & 0o111
    os.chmod(path, (0o777 if executable else 0o666) & ~_umask())


def check_output_path(path: str | os.PathLike, folder: bool = False) -> Path:
    """Fail fast, before any work, when `path` cannot become an output file (or folder, with `folder`).

    Catches the usual mistakes (the path or one of its parents is the wrong kind of thing) with a
    message naming the path, instead of an OSError once the result is ready to be written.
    """
    path = Path(path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"cannot write {path}: {parent} is a file, not a folder; choose another output path")
            break
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"output folder {path} exists and is a file; choose a folder path (or remove the file)")
    if not folder and path.is_dir():
        raise UserError(f"output file {path} is an existing folder; choose a file path")
    return path


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`.

    For libraries that insist on writing a file themselves (matplotlib, torch.save, pyarrow).
    The temp name keeps the final suffix so format detection by extension still works.
    """
    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path, suffix=path.suffix)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        plain_mode(tmp)  # after the body: a library may have replaced the file with its own 0600 one
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write `obj` as JSON atomically. Keys are kept in insertion order so outputs are reproducible."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> Path:
    """Write one JSON object per line atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return atomic_write_text(path, text)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder in a temporary sibling and rename it into place when complete.

    If the body raises (or the process dies), the final folder never appears; a leftover temp
    folder has a dot-name that no reader treats as finished. With `overwrite`, an existing folder
    is replaced only after the new one is complete.
    """
    path = check_output_path(path, folder=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for inside in [tmp, *tmp.rglob("*")]:  # mkdtemp makes 0700, safetensors 0600: finished = plain modes
            if not inside.is_symlink():
                plain_mode(inside)
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"{path} appeared while it was being written")
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
