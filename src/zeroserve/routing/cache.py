"""The response cache for synchronous inference: outputs stored by a digest of what was
asked (tenant, model, version, canonical inputs), so a repeated request skips the instance.

Opt-in per version (`cache: {ttl_s, max_entries}`), for deterministic models only. Entries
expire after `ttl_s` and the least recently used go first beyond `max_entries`. Canonical
inputs: tensors sorted by name, each as name, datatype, shape and bytes, so JSON and binary
encodings of the same tensors share an entry.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from zeroserve.spec import CachePolicy
from zeroserve.tensors import Tensors

__all__ = ["ResponseCache", "input_digest"]

VersionKey = tuple[str, int]


def input_digest(tenant: str, model: str, version: int, inputs: Tensors) -> str:
    h = hashlib.sha256(f"{tenant}\0{model}\0{version}\0".encode())
    for name in sorted(inputs):
        array = inputs[name]
        h.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        if array.dtype == object:  # BYTES: each element length-prefixed
            for item in array.reshape(-1):
                raw = item if isinstance(item, bytes) else str(item).encode()
                h.update(len(raw).to_bytes(8, "little"))
                h.update(raw)
        else:
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


class ResponseCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._entries: dict[VersionKey, OrderedDict[str, tuple[float, Tensors]]] = {}

    def get(self, key: VersionKey, digest: str) -> Tensors | None:
        entries = self._entries.get(key)
        found = entries.get(digest) if entries else None
        if found is None:
            return None
        assert entries is not None
        expires, outputs = found
        if expires <= self.clock():
            del entries[digest]
            return None
        entries.move_to_end(digest)
        return outputs

    def put(self, key: VersionKey, policy: CachePolicy, digest: str, outputs: Tensors) -> None:
        entries = self._entries.setdefault(key, OrderedDict())
        frozen = {}
        for name, array in outputs.items():
            copy = np.array(array, copy=True)
            copy.flags.writeable = False  # shared by every hit
            frozen[name] = copy
        entries[digest] = (self.clock() + policy.ttl_s, frozen)
        entries.move_to_end(digest)
        while len(entries) > policy.max_entries:
            entries.popitem(last=False)

    def drop_model(self, model: str) -> None:
        for key in [k for k in self._entries if k[0] == model]:
            del self._entries[key]

    def size(self, key: VersionKey) -> int:
        return len(self._entries.get(key, ()))
