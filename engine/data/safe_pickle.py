"""Loading pickled numpy arrays without running arbitrary code.

A pickle can call any importable function while it loads. The data wheels we read ship numpy
arrays as pickles, so we unpickle with an allow-list of exactly the globals numpy needs to
rebuild an ndarray; anything else (os.system, builtins.eval, ...) raises UnsafePickleError.
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np



class UnsafePickleError(pickle.UnpicklingError):
    pass


def _numpy_global(module: str, name: str):
    import numpy.core.multiarray as _  # noqa: F401  (numpy 2 keeps the old path importable)
    allowed = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }
    if (module, name) not in allowed:
        raise UnsafePickleError(
            f"Refusing to load {module}.{name} from a pickle: only numpy arrays are allowed.")
    mod = module.replace("numpy.core", "numpy._core")
    import importlib
    return getattr(importlib.import_module(mod), name)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401
        if module == "builtins" and name in ("tuple", "list", "dict"):
            return {"tuple": tuple, "list": list, "dict": dict}[name]
        return _numpy_global(module, name)


def load_numpy_pickle(path: str | Path):
    """Unpickle a (gzip-compressed or plain) file holding numpy arrays in tuples/lists/dicts."""
    path = Path(path)
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        return _NumpyOnlyUnpickler(f, encoding="latin1").load()
