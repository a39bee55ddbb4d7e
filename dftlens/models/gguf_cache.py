"""Turn a GGUF file into an ordinary Hugging Face directory, once.

transformers dequantises GGUF at every load (about a minute for Gemma-3-270M on a
laptop CPU). We pay that once: convert, save as safetensors in the user cache,
check the saved copy reproduces the in-memory model's logits, and only then rename
the directory into place. A half-written cache directory is never used because it
never carries the final name.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from ..errors import DftlensError, ModelNotAvailable
from ..io import ensure_disk_space
from ..paths import cache_root

MANIFEST = "dftlens_cache.json"


def _file_digest(path: Path) -> str:
    """A cheap identity for a GGUF file: size plus a hash of its first and last MiB."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(2**20))
        f.seek(max(0, size - 2**20))
        h.update(f.read(2**20))
    return h.hexdigest()[:16]


def cached_dir_for(gguf_path: Path) -> Path:
    """The cache directory a GGUF file converts into, ``<cache>/models/<stem>-<digest>``.

    The digest covers the file's size and its first and last MiB, so a changed file gets a new
    directory.
    """
    return cache_root() / "models" / f"{gguf_path.stem}-{_file_digest(gguf_path)}"


@contextmanager
def cache_lock(name: str):
    """Serialise cache writers (e.g. parallel test workers converting the same file); waits its turn.

    A ``filelock`` lock (POSIX and Windows), unlinked by its holder before release so
    no lock file stays behind in the cache.
    """
    from filelock import FileLock

    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".{name}.lock"
    with FileLock(str(path)):
        try:
            yield
        finally:
            try:
                path.unlink()
            except OSError:
                pass


def check_gguf(path: Path) -> None:
    """Refuse a file that is not a complete GGUF file (truncated, text, other format) in one sentence."""
    path = Path(path)
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ModelNotAvailable(f"{path} is not a GGUF file (it does not start with the GGUF header); "
                                "pass a .gguf model file or download it again.")
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        size = path.stat().st_size
        for tensor in reader.tensors:  # every tensor's data must lie inside the file
            if int(tensor.data_offset) + int(tensor.n_bytes) > size:
                raise ValueError("tensor data past the end of the file")
    except ModelNotAvailable:
        raise
    except Exception as exc:  # gguf raises ValueError, IndexError, struct errors on damaged files
        raise ModelNotAvailable(f"{path} is a truncated or damaged GGUF file ({type(exc).__name__}); "
                                "download it again.") from None


def is_complete(directory: Path) -> bool:
    """Whether ``directory`` is a finished conversion: it holds the manifest and ``config.json``."""
    return (directory / MANIFEST).is_file() and (directory / "config.json").is_file()


def convert_gguf(gguf_path: Path, progress: bool = True) -> Path:
    """Return a cached HF directory for ``gguf_path``, converting it on first use."""
    gguf_path = Path(gguf_path).resolve()
    target = cached_dir_for(gguf_path)
    if is_complete(target):
        return target
    check_gguf(gguf_path)  # before anything is created in the cache
    with cache_lock(target.name):
        if is_complete(target):  # another process finished it while we waited
            return target
        return _convert(gguf_path, target, progress)


def _convert(gguf_path: Path, target: Path, progress: bool) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    ensure_disk_space(target.parent, needed_bytes=4 * gguf_path.stat().st_size + 2**28)
    if progress:
        print(f"Converting {gguf_path.name} to a cached Hugging Face model (once; about a minute)...")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                  trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32, trust_remote_code=False
        ).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelNotAvailable(f"transformers cannot read {gguf_path} ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}); use a GGUF of "
                                "an architecture transformers supports, or its Hugging Face directory.") from None
    # The model object remembers it came from GGUF and refuses save_pretrained;
    # after dequantisation its weights are ordinary float tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not getattr(model.config, "architectures", None):
        model.config.architectures = [type(model).__name__]

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _verify(model, tokenizer, tmp)
        (tmp / MANIFEST).write_text(json.dumps({"source": str(gguf_path), "digest": _file_digest(gguf_path)}))
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _verify(model, tokenizer, directory: Path) -> None:
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, trust_remote_code=False).eval()
    ids = tokenizer("Français: \"eau\" - English: \"", return_tensors="pt").input_ids
    with torch.no_grad():
        a, b = model(ids).logits, reloaded(ids).logits
    if not torch.allclose(a, b, atol=1e-4, rtol=1e-4):
        raise DftlensError(
            f"The converted copy in {directory} does not reproduce the GGUF model's logits; "
            "it was discarded. Upgrade transformers and gguf, then try again."
        )
