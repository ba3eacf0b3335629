"""What every experiment run shares: seeds, results cached on disk, provenance.

* Seeds: `derive_seed(base, *keys)` gives every random choice of a run its own seed,
  stable across runs, processes and platforms, so a rerun (or a resumed run, or a run
  sharded over machines) gives the same numbers.
* Cache: per-item results are written atomically (temporary file + rename), so a killed
  run never leaves half a file; `key(...)` names a cache directory by a hash of
  everything that changes an item's result.
* Provenance: `versions()` and `machine()` for the metadata block of every report.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Packages whose versions shape the numbers (missing ones are skipped).
PACKAGES = (
    "sam-convex",
    "torch",
    "torchvision",
    "segment-anything",
    "sam2",
    "imagecorruptions",
    "scikit-image",
    "numpy",
    "scipy",
    "opencv-python-headless",
    "opencv-python",
    "numba",
)


# ---------------------------------------------------------------------------- seeds


def derive_seed(base: int, *keys: str) -> int:
    """A seed in [0, 2**31) from a base seed and string keys (e.g. image, condition,
    role). 31 bits because OpenCV's setRNGSeed takes a signed C int."""
    entropy = [int(base)] + [zlib.crc32(k.encode()) for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0]) & 0x7FFFFFFF


# ---------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """`.cache/` of the source checkout when run from one, else ~/.cache/sam-convex."""
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").exists():
        return repo / ".cache"
    return Path.home() / ".cache" / "sam-convex"


def check_writable(directory: str | os.PathLike, option: str = "--out") -> Path:
    """Prove that `directory` can be created (if missing) and written to, before any
    compute is spent, without creating anything; ValueError naming the option and the
    reason otherwise."""
    if str(directory) == "":
        raise ValueError(f"{option} must name a directory, got ''")
    path = Path(directory)
    existing = path
    while not existing.exists():  # the nearest existing ancestor decides
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{option} {str(directory)!r} is not a writable directory ({existing} is a file)")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ValueError(f"{option} {str(directory)!r} is not a writable directory ({err.strerror or err})") from err
    return path


def key(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (cache directory and file names)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def digest(*parts: np.ndarray | bytes | str | None) -> str:
    """A short hash of contents: arrays (their bytes and shape), bytes and strings in
    order; None parts are skipped. A cached result keyed on it is reused only for the
    same inputs, whatever their file names."""
    h = hashlib.sha256()
    for part in parts:
        if part is None:
            continue
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes())
            h.update(str(part.shape).encode())
        else:
            h.update(part.encode() if isinstance(part, str) else part)
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """`digest` of a file's bytes, read in chunks (feature files can be large)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same directory and a rename,
    so readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_directory(root: Path, fill: Callable[[Path], None], done: str) -> None:
    """Create directory `root` by calling fill(tmp) on a temporary sibling and renaming
    it into place, so a killed or concurrent run never leaves a half-filled directory.
    `done` is a file fill writes last; a concurrent run that already completed `root`
    (it holds `done`) wins without error. An existing empty `root` is replaced."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        fill(tmp)
        if root.exists():
            root.rmdir()  # only an empty directory can be replaced
        os.replace(tmp, root)
    except OSError:
        if not (root / done).exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj).encode())


def read_json(path: Path) -> Any:
    """The JSON value in `path`; ValueError (not a traceback deep in json) when the file
    is empty, truncated or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as err:
        raise ValueError(f"not valid JSON ({err})") from err


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Arrays as a compressed .npz, written atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write(path, buf.getvalue())


def read_npz(path: Path, keys: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays in `path`; ValueError when the file is damaged or lacks one of `keys`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        raise ValueError(f"not a readable .npz ({type(err).__name__}: {err})") from err
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"missing arrays {missing}")
    return arrays


def check_fields(record: Any, fields: dict[str, type]) -> None:
    """ValueError unless `record` is a dict holding `fields` with the given types."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    for name, kind in fields.items():
        if not isinstance(record.get(name), kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            raise ValueError(f"field {name!r} missing or not {' or '.join(k.__name__ for k in kinds)}")


def clear_damaged(path: Path) -> None:
    """Remove a directory standing where a cache file belongs (a damaged cache), so the
    recomputed entry can be written there."""
    if Path(path).is_dir():
        shutil.rmtree(path)


def warn_damaged(path: Path, err: Exception) -> None:
    """A damaged cache entry is not fatal: say which file, then recompute it."""
    warnings.warn(f"cached result {path} is damaged ({err}); recomputing it", stacklevel=2)


# ---------------------------------------------------------------------------- provenance


def versions() -> dict[str, str]:
    """Python and the installed versions of `PACKAGES`."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def machine(device: str | torch.device | None = None) -> str:
    """The hardware a run used, e.g. 'cpu: x86_64, 2 CPUs' or 'cuda: NVIDIA H100 (host
    cpu: x86_64, 16 CPUs)'; the host is named with a GPU too, since the polygon fit and
    the hulls run on it."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    cpu = f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)} (host {cpu})"
    return cpu
