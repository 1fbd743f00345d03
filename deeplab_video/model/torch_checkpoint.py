"""Reads PyTorch checkpoints into numpy arrays, without torch and without unsafe unpickling.

Two file formats carry the official Video-kMaX / kMaX-DeepLab weights:

- `.pth`, written by `torch.save` (detectron2's checkpointer saves `{"model": state_dict,
  ...}`): a zip archive holding `<prefix>/data.pkl`, a pickle whose tensors refer to raw
  storages `<prefix>/data/<key>` by persistent id;
- `.pkl`, detectron2's own format: a pickled dict of numpy arrays, either the state dict
  itself or under "model".

A pickle can name any importable callable and make the loader call it, so loading an
untrusted file with `pickle.load` (or `torch.load` without `weights_only`) can run
arbitrary code. `RestrictedUnpickler` resolves only the globals of `ALLOWED_GLOBALS`, each
to our own numpy reconstruction or to a plain container, and refuses every other global
with `UnsafePickleError` before anything is called.

    state = read_state_dict("model_final.pth")   # {"backbone.stem.conv1.weight": ndarray, ...}
"""

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray

# torch storage classes (pickled by name inside persistent ids) and their element types.
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}
# torch.bfloat16 has no numpy type: its 16 bits are the top half of a float32.
BFLOAT16_STORAGE = "BFloat16Storage"
# Keys under which checkpoint writers nest the state dict (detectron2: "model").
STATE_DICT_KEYS = ("model", "state_dict")
_ZIP_PICKLE = "data.pkl"
# First object of a legacy (torch < 1.6, non-zip) torch.save file.
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C


class TorchCheckpointError(ValueError):
    """The file is not a PyTorch checkpoint this reader understands."""


class UnsafePickleError(TorchCheckpointError):
    """The pickle names a global outside `ALLOWED_GLOBALS` (it could run code on load)."""


class _StorageType:
    """Stands for a torch storage class named in a pickle; holds its element type."""

    def __init__(self, name: str):
        self.name = name

    def dtype(self, byteorder: str) -> np.dtype:
        if self.name == BFLOAT16_STORAGE:
            return np.dtype(np.uint16).newbyteorder(byteorder)
        return np.dtype(STORAGE_DTYPES[self.name]).newbyteorder(byteorder)


class _Storage:
    """One flat storage, read from the file when a tensor of it is first needed."""

    def __init__(self, read: Callable[[], np.ndarray], is_bfloat16: bool):
        self._read = read
        self._data: np.ndarray | None = None
        self.is_bfloat16 = is_bfloat16

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            self._data = self._read()
        return self._data


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


class _Tensor:
    """A tensor of the pickle: a strided view of a storage, read by `array` only.

    Checkpoints may hold optimizer state two or three times the size of the weights;
    tensors outside the state dict are never read.
    """

    def __init__(
        self,
        storage: _Storage,
        storage_offset: int,
        size: tuple[int, ...],
        stride: tuple[int, ...],
    ):
        self._storage = storage
        self._offset = int(storage_offset)
        self._size = tuple(int(n) for n in size)
        self._stride = tuple(int(n) for n in stride)
        if len(self._size) != len(self._stride) or min(self._size + self._stride, default=0) < 0:
            raise TorchCheckpointError(f"invalid tensor size {size} or stride {stride}")

    def array(self) -> np.ndarray:
        """The tensor's values (bfloat16 widened to float32).

        Raises:
            TorchCheckpointError: the view reaches outside its storage.
        """
        data = self._storage.data
        size, stride, offset = self._size, self._stride, self._offset
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if offset < 0 or (min(size, default=1) > 0 and last >= data.size):
            raise TorchCheckpointError(
                f"tensor of size {size}, stride {stride} at offset {offset} exceeds its "
                f"storage of {data.size} elements"
            )
        view = np.lib.stride_tricks.as_strided(
            data[offset:],
            shape=size,
            strides=tuple(s * data.itemsize for s in stride),
            writeable=False,
        )
        array = np.array(view, dtype=data.dtype.newbyteorder("="))
        return _bfloat16_to_float32(array) if self._storage.is_bfloat16 else array


def _rebuild_tensor(
    storage: _Storage,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    *unused: Any,
) -> _Tensor:
    """torch._utils._rebuild_tensor(_v2): a strided view of a storage.

    Args:
        storage: the tensor's storage.
        storage_offset: index of the first element in the storage.
        size: the tensor's shape.
        stride: elements between neighbours along each axis.
        *unused: requires_grad, backward hooks and metadata (meaningless here).

    Raises:
        TorchCheckpointError: not a storage, or an invalid size or stride.
    """
    del unused
    if not isinstance(storage, _Storage):
        raise TorchCheckpointError(f"tensor rebuilt from {type(storage).__name__}, not a storage")
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: _Tensor, *unused: Any) -> _Tensor:
    """torch._utils._rebuild_parameter(_with_state): a parameter is its data."""
    del unused
    return data


def _rebuild_from_type(
    function: Callable[..., Any], new_type: Any, args: tuple[Any, ...], state: Any
) -> Any:
    """torch._tensor._rebuild_from_type_v2: a tensor subclass is its plain tensor."""
    del new_type, state
    return function(*args)


class _TensorType:
    """Stands for torch.Tensor / torch.nn.Parameter named in a pickle (never called)."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    names = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        names[(module, "_reconstruct")] = _multiarray._reconstruct
        names[(module, "scalar")] = _multiarray.scalar
    names[("numpy", "ndarray")] = np.ndarray
    names[("numpy", "dtype")] = np.dtype
    return names


# Every global a checkpoint pickle may name, and what it resolves to.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): lambda text, encoding="utf-8": text.encode(encoding),
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Tensor"): _TensorType,
    ("torch.nn.parameter", "Parameter"): _TensorType,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
    ("torch", BFLOAT16_STORAGE): _StorageType(BFLOAT16_STORAGE),
    **_numpy_globals(),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only plain containers, numpy arrays and torch tensors (as numpy arrays).

    Args:
        file: the pickle stream.
        source: the file name, for error messages.
        load_storage: maps a storage key, its `_StorageType` and element count to the
            flat storage array; None when the pickle may not refer to storages.
    """

    def __init__(
        self,
        file: BinaryIO,
        source: str,
        load_storage: Callable[[str, _StorageType, int], _Storage] | None = None,
    ):
        super().__init__(file, encoding="latin1")
        self._source = source
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refusing to unpickle the global {module}.{name}; a checkpoint "
                "may only hold tensors, numpy arrays and plain containers (loading it with "
                "pickle could run arbitrary code)"
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        if (
            self._load_storage is None
            or not isinstance(pid, tuple)
            or len(pid) < 5
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
        ):
            raise UnsafePickleError(f"{self._source}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        return self._load_storage(str(key), storage_type, int(numel))


def _unpickle_archive(archive: zipfile.ZipFile, path: str) -> Any:
    """Unpickles a `torch.save` zip archive; storages are read from it on first use."""
    names = set(archive.namelist())
    pickles = [n for n in names if n.rsplit("/", 1)[-1] == _ZIP_PICKLE and n.count("/") == 1]
    if len(pickles) != 1:
        raise TorchCheckpointError(f"{path}: a zip but not a torch.save archive (no data.pkl)")
    prefix = pickles[0][: -len(_ZIP_PICKLE)]
    byteorder = "<"
    if prefix + "byteorder" in names:
        byteorder = {"little": "<", "big": ">"}[archive.read(prefix + "byteorder").decode()]
    cache: dict[str, _Storage] = {}

    def load_storage(key: str, storage_type: _StorageType, numel: int) -> _Storage:
        member = f"{prefix}data/{key}"
        if member not in names:
            raise TorchCheckpointError(f"{path}: storage {member} is missing")

        def read() -> np.ndarray:
            data = np.frombuffer(archive.read(member), dtype=storage_type.dtype(byteorder))
            if data.size < numel:
                raise TorchCheckpointError(
                    f"{path}: storage {member} holds {data.size} of {numel} elements"
                )
            return data

        if key not in cache:
            cache[key] = _Storage(read, storage_type.name == BFLOAT16_STORAGE)
        return cache[key]

    with archive.open(pickles[0]) as stream:
        return RestrictedUnpickler(stream, path, load_storage).load()


def is_torch_file(path: str) -> bool:
    """Whether `path` is a file in one of the formats `read_state_dict` reads.

    A torch.save zip archive (a `data.pkl` one folder deep) or a pickle (first byte 0x80,
    the PROTO opcode of protocols 2 and later).
    """
    if not os.path.isfile(path):
        return False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/" + _ZIP_PICKLE) for n in archive.namelist())
    with open(path, "rb") as stream:
        return stream.read(1) == pickle.PROTO


def _state_dict(checkpoint: Any, path: str) -> dict[str, np.ndarray]:
    for key in STATE_DICT_KEYS:
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict):
        raise TorchCheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a dict")
    state = {
        str(k): v.array() if isinstance(v, _Tensor) else v
        for k, v in checkpoint.items()
        if isinstance(v, _Tensor | np.ndarray)
    }
    if not state:
        raise TorchCheckpointError(
            f"{path}: no tensors found (top-level keys: {sorted(map(str, checkpoint))[:10]})"
        )
    return state


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """Reads the state dict of a PyTorch checkpoint as numpy arrays.

    Args:
        path: a `torch.save` zip archive (`.pth`) or a pickled dict of numpy arrays
            (detectron2 `.pkl`); the state dict is the file's dict itself, or its "model"
            (or "state_dict") entry.

    Returns:
        {name: array} in the file's layout (PyTorch's NCHW / OIHW), with the file's dtypes
        (bfloat16 widened to float32). Entries that are not arrays are left out; tensors
        outside the state dict (optimizer state) are not read.

    Raises:
        UnsafePickleError: the pickle names a global that is not allowed; nothing it names
            has been called.
        TorchCheckpointError: not a readable PyTorch checkpoint.
        FileNotFoundError: no such file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file {path}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return _state_dict(_unpickle_archive(archive, path), path)
    with open(path, "rb") as stream:
        data = stream.read()
    try:
        checkpoint = RestrictedUnpickler(io.BytesIO(data), path).load()
    except (pickle.UnpicklingError, EOFError) as error:
        raise TorchCheckpointError(
            f"{path}: not a torch.save zip archive nor a pickle ({error})"
        ) from error
    if isinstance(checkpoint, int) and checkpoint == _LEGACY_MAGIC_NUMBER:
        raise TorchCheckpointError(
            f"{path}: a legacy (PyTorch < 1.6) torch.save file; re-save it with a newer "
            "PyTorch (torch.save(torch.load(path), new_path)) and load the new file"
        )
    return _state_dict(checkpoint, path)
