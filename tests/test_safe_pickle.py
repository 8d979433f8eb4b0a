import gzip
import os
import pickle

import numpy as np
import pytest

from engine.data.safe_pickle import UnsafePickleError, load_numpy_pickle


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/taillab-pwned",))


def test_numpy_arrays_round_trip(tmp_path):
    data = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2])), [np.uint8(7)])
    p = tmp_path / "a.pkl.gz"
    with gzip.open(p, "wb") as f:
        pickle.dump(data, f, protocol=2)
    (a, b), (c,) = load_numpy_pickle(p)
    assert (a == data[0][0]).all() and a.dtype == np.float32 and (b == [1, 2]).all() and c == 7


@pytest.mark.parametrize("payload", [Evil(), (np.zeros(2), Evil()), {"x": eval}])
def test_malicious_pickles_are_refused_without_running(tmp_path, payload):
    marker = "/tmp/taillab-pwned"
    if os.path.exists(marker):
        os.remove(marker)
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps(payload))
    with pytest.raises(UnsafePickleError, match="only numpy arrays"):
        load_numpy_pickle(p)
    assert not os.path.exists(marker)
