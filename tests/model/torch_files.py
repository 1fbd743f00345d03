"""Writes PyTorch checkpoint files with the standard library only (no torch), for tests.

`write_pth` lays out a zip archive as `torch.save` does (`archive/data.pkl` with tensors
that refer to raw little-endian storages `archive/data/<key>` by persistent id), holding
`{"model": state_dict}` as detectron2's checkpointer saves it; `write_pkl` writes
detectron2's pickled dict of numpy arrays.
"""

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from typing import Any

import numpy as np

_STORAGE_TYPES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


class Global:
    """Pickles as a reference to `module.name` (a GLOBAL opcode), whatever is importable."""

    def __init__(self, module: str, name: str):
        self.module = module
        self.name = name

    def __call__(self, *args: Any) -> None:
        raise TypeError("a Global only stands for a name in a pickle")


class Storage:
    """A flat storage of a torch.save archive: the key of its file and its data."""

    def __init__(
        self,
        key: str,
        data: np.ndarray,
        storage_type: str | None = None,
        numel: int | None = None,
    ):
        self.key = key
        self.data = np.ascontiguousarray(data).reshape(-1)
        self.storage_type = storage_type or _STORAGE_TYPES[self.data.dtype]
        # Number of elements the pickle declares (a corrupt file declares more).
        self.numel = self.data.size if numel is None else numel


class Tensor:
    """A tensor viewing `storage` from `offset` with `shape` and `stride` (in elements)."""

    def __init__(self, storage: Storage, shape: tuple[int, ...], stride=None, offset: int = 0):
        if stride is None:
            stride = tuple(int(np.prod(shape[i + 1 :])) for i in range(len(shape)))
        self.storage, self.shape, self.stride, self.offset = storage, shape, stride, offset

    def __reduce__(self):
        rebuild = Global("torch._utils", "_rebuild_tensor_v2")
        args = (self.storage, self.offset, self.shape, self.stride, False, OrderedDict())
        return rebuild, args


class _TorchPickler(pickle._Pickler):
    """Pickler that writes `Global`s as globals and `Storage`s as persistent ids."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_global_reference(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[Global] = _save_global_reference

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Storage):
            storage_type = Global("torch", obj.storage_type)
            return ("storage", storage_type, obj.key, "cpu", obj.numel)
        return None


def dumps(obj: Any) -> bytes:
    """Pickles `obj` (protocol 2, as torch.save) with `Global`/`Tensor`/`Storage` support."""
    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def tensors_of(state: dict[str, np.ndarray]) -> "OrderedDict[str, Tensor]":
    """One contiguous storage per array."""
    return OrderedDict(
        (name, Tensor(Storage(str(i), value), tuple(value.shape)))
        for i, (name, value) in enumerate(state.items())
    )


def write_pth(path, checkpoint: Any, storages: list[Storage] | None = None) -> None:
    """Writes a torch.save zip archive of `checkpoint` (which holds `Tensor`s).

    Args:
        path: output file.
        checkpoint: e.g. {"model": tensors_of(state), "iteration": 10}.
        storages: every storage the tensors use; None: found by walking `checkpoint`'s
            dicts.
    """
    if storages is None:
        storages = _find_storages(checkpoint)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", dumps(checkpoint))
        archive.writestr("archive/byteorder", "little")
        for storage in storages:
            little_endian = storage.data.astype(storage.data.dtype.newbyteorder("<"))
            archive.writestr(f"archive/data/{storage.key}", little_endian.tobytes())
        archive.writestr("archive/version", "3\n")


def _find_storages(obj: Any) -> list[Storage]:
    found: dict[str, Storage] = {}
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, Tensor):
            found[item.storage.key] = item.storage
    return list(found.values())


def write_pkl(path, state: dict[str, np.ndarray], under_model: bool = True) -> None:
    """Writes detectron2's .pkl: {"model": state, "__author__": ...} or the state itself."""
    obj: Any = {"model": dict(state), "__author__": "test"} if under_model else dict(state)
    with open(path, "wb") as stream:
        pickle.dump(obj, stream)


class RunsACommand:
    """Unpickling this calls os.system(command): what a malicious checkpoint does."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def write_malicious_pth(path, command: str) -> None:
    """A torch.save-like archive whose pickle runs `command` when unpickled."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"model": RunsACommand(command)}))
