"""Loading pickled numpy arrays without running arbitrary code.

A pickle can call any importable function while it loads. The data wheels we read ship numpy
arrays as pickles, so we unpickle with an allow-list of exactly the globals numpy needs to
rebuild an ndarray; anything else (os.system, builtins.eval, ...) raises UnsafePickleError.
"""
from __future__ import annotations

import gzip
import importlib
import pickle
from pathlib import Path

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 pickles rebuild bytes with it (str -> bytes; no side effects)
}
_CONTAINERS = {"tuple": tuple, "list": list, "dict": dict}


class UnsafePickleError(pickle.UnpicklingError):
    pass


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "builtins" and name in _CONTAINERS:
            return _CONTAINERS[name]
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"Refusing to load {module}.{name} from a pickle: only numpy arrays are allowed.")
        # pickles written by numpy 1.x name numpy.core, which numpy 2 renamed numpy._core
        return getattr(importlib.import_module(module.replace("numpy.core", "numpy._core")), name)


def load_numpy_pickle(path: str | Path):
    """Unpickle a (gzip-compressed or plain) file holding numpy arrays in tuples/lists/dicts."""
    path = Path(path)
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    with (gzip.open if gz else open)(path, "rb") as f:
        return _NumpyOnlyUnpickler(f, encoding="latin1").load()
