"""Read a ``torch.save`` file without running any code from it.

``torch.load(weights_only=True)`` refuses pickled classes it does not know,
and ``weights_only=False`` imports and calls whatever the file names. This
reader sits between the two: it unpickles with a ``find_class`` that never
imports anything and answers every name the pickle asks for from a fixed list:

- plain containers (``OrderedDict``, ``set``, ``frozenset``, ``slice``) and
  bytes written the Python 2 way (``_codecs.encode(text, "latin1")``);
- the tensor rebuild functions torch writes, re-implemented here on tensors
  made from the file's own storage records (``as_strided`` checks bounds);
- **inert stand-ins** for classes of the training code and of ``torch.nn``
  (``models.*``, ``utils.*``, ``torch.nn.modules.*``) and for a few data
  types that turn up in training metadata (numpy arrays, paths, argparse
  namespaces). A stand-in records the class name, the arguments and the
  state the pickle gives it; none of the class's code exists or runs.

Any other name (``os.system``, ``builtins.eval``, ``subprocess.Popen``, a
module that would run code when imported, ...) stops the load with
:class:`RefusedGlobal` before anything is called.

Both of torch's formats are read: the zip archive (torch >= 1.6) and the
older sequence of pickles followed by raw storages.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from olvf.errors import CheckpointError

# Modules whose classes become inert stand-ins: the YOLOv5 repository's own packages, torch's layers, and data
# types that training scripts leave in a checkpoint's metadata.
_INERT_MODULES = ("models", "utils", "torch.nn.modules")
_INERT_EXACT = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("pathlib", "Path"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"),
    ("argparse", "Namespace"),
}
_CONTAINERS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    # Protocol-2 pickles (torch's default) spell builtins the Python 2 way.
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("__builtin__", "slice"): slice,
}
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class RefusedGlobal(CheckpointError):
    """The pickle names something outside the fixed list; nothing from it was called."""

    def __init__(self, path: Path, module: str, name: str) -> None:
        self.module, self.name = module, name
        super().__init__(
            f"{path.name}: refused to read: its pickle asks for {module}.{name}, which is neither data nor a "
            "model class of the YOLOv5 repository or torch.nn; nothing from the file was run"
        )


class Inert:
    """Stand-in for a class named by a pickle: keeps the arguments and state, runs none of the class's code."""

    origin = "?"
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: list[Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items = args, kwargs, None, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls the class; __new__ kept the arguments
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    # Pickles of list or dict subclasses add their items with these.
    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    @property
    def class_name(self) -> str:
        return self.origin.rsplit(".", 1)[-1]

    @property
    def attrs(self) -> dict[str, Any]:
        """The instance's ``__dict__`` as pickled (``(dict, slots)`` states give the dict)."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]
        return state if isinstance(state, dict) else {}

    def __repr__(self) -> str:
        return f"<inert {self.origin}>"


_STAND_INS: dict[str, type[Inert]] = {}


def _stand_in(module: str, name: str) -> type[Inert]:
    origin = f"{module}.{name}"
    if origin not in _STAND_INS:
        _STAND_INS[origin] = type(name, (Inert,), {"origin": origin, "__module__": __name__})
    return _STAND_INS[origin]


class _StorageType:
    """What ``torch.HalfStorage`` and friends resolve to: only the element type."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _ParameterType:
    """``torch.nn.Parameter`` as a type tag: parameters are read as plain tensors."""


def _ints(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, int) for v in values):
        raise CheckpointError(f"a tensor's {what} is not a list of integers")
    return tuple(values)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor) or not isinstance(storage_offset, int):
        raise CheckpointError("a tensor in the pickle does not point at one of the file's storages")
    # as_strided refuses views that reach outside the storage.
    return storage.as_strided(_ints(size, "size"), _ints(stride, "stride"), storage_offset)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None) -> Any:
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("a parameter in the pickle holds no tensor")
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    if func not in (_rebuild_tensor_v2, _rebuild_parameter) or not isinstance(args, tuple):
        raise CheckpointError("a tensor subclass in the pickle is rebuilt by something other than torch's rebuilders")
    return func(*args)


def _encode_bytes(text: Any, encoding: Any = "utf-8") -> bytes:
    # Protocol-2 pickles write bytes (numpy arrays' data) as _codecs.encode(text, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError("the pickle encodes bytes in an unexpected way")
    return text.encode("latin1")


_TORCH_FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    ("_codecs", "encode"): _encode_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
}


def resolve_global(path: Path, module: str, name: str) -> Any:
    """What a name in the pickle stands for; never imports ``module``."""
    if not name.isidentifier():  # protocol 4 allows dotted names, which reach attributes of attributes
        raise RefusedGlobal(path, module, name)
    key = (module, name)
    if key in _CONTAINERS:
        return _CONTAINERS[key]
    if key in _TORCH_FUNCTIONS:
        return _TORCH_FUNCTIONS[key]
    if module == "torch" and name in _STORAGE_DTYPES:
        return _StorageType(_STORAGE_DTYPES[name])
    if key == ("torch.nn.parameter", "Parameter"):
        return _ParameterType
    if key in _INERT_EXACT or any(module == m or module.startswith(m + ".") for m in _INERT_MODULES):
        return _stand_in(module, name)
    raise RefusedGlobal(path, module, name)


def _storage_from_bytes(raw: bytes, dtype: torch.dtype, numel: Any, what: str) -> torch.Tensor:
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if not isinstance(numel, int) or numel < 0 or len(raw) < numel * itemsize:
        raise CheckpointError(f"storage {what} is shorter than the pickle says (truncated file?)")
    if numel == 0:
        return torch.empty(0, dtype=dtype)
    return torch.frombuffer(bytearray(raw[: numel * itemsize]), dtype=dtype)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, path: Path, storage: Callable[[tuple[Any, ...]], Any]) -> None:
        super().__init__(file)
        self._path = path
        self._storage = storage

    def find_class(self, module: str, name: str) -> Any:
        return resolve_global(self._path, module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointError(f"{self._path.name}: unexpected persistent id in the pickle")
        return self._storage(pid)


def _load_zip(path: Path, archive: zipfile.ZipFile) -> Any:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
        raise CheckpointError(f"{path.name} is a zip archive but not one written by torch.save (no data.pkl)")
    prefix = pickles[0][: -len("data.pkl")]
    if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() not in (b"little", b""):
        raise CheckpointError(f"{path.name} was saved on a big-endian machine; re-save it on a little-endian one")
    for info in archive.infolist():
        if info.compress_type != zipfile.ZIP_STORED:  # torch stores records as they are; refuse zip bombs
            raise CheckpointError(f"{path.name}: record {info.filename} is compressed, which torch.save never does")
    storages: dict[str, torch.Tensor] = {}

    def storage(pid: tuple[Any, ...]) -> torch.Tensor:
        if len(pid) != 5 or pid[0] != "storage" or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str):
            raise CheckpointError(f"{path.name}: unexpected storage reference in the pickle")
        _, kind, key, _location, numel = pid
        if key not in storages:
            record = f"{prefix}data/{key}"
            if record not in names:
                raise CheckpointError(f"{path.name}: storage {key} is missing from the archive (truncated file?)")
            storages[key] = _storage_from_bytes(archive.read(record), kind.dtype, numel, key)
        return storages[key]

    with archive.open(pickles[0]) as handle:
        return _Unpickler(io.BytesIO(handle.read()), path, storage).load()


def _load_legacy(path: Path, handle: BinaryIO) -> Any:
    """torch < 1.6: magic number, protocol, system info and the object, each a pickle, then the raw storages."""

    def plain() -> Any:
        return _Unpickler(handle, path, lambda pid: None).load()

    if plain() != _LEGACY_MAGIC or plain() != _LEGACY_PROTOCOL:
        raise CheckpointError(f"{path.name} is a pickle but not a checkpoint written by torch.save")
    info = plain()
    if not isinstance(info, dict) or not info.get("little_endian", True):
        raise CheckpointError(f"{path.name} was saved on a big-endian machine; re-save it on a little-endian one")
    storages: dict[str, tuple[torch.dtype, int, torch.Tensor]] = {}
    size = os.fstat(handle.fileno()).st_size

    def storage(pid: tuple[Any, ...]) -> Any:
        if pid[0] == "module":  # (class, source file, source text): torch kept the source to warn of changes
            return pid[1] if len(pid) > 1 else None
        if len(pid) != 6 or pid[0] != "storage" or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str):
            raise CheckpointError(f"{path.name}: unexpected storage reference in the pickle")
        _, kind, key, _location, numel, view = pid
        if view is not None:
            raise CheckpointError(f"{path.name} uses storage views of torch < 1.0, which olvf does not read")
        if not isinstance(numel, int) or numel < 0 or numel * kind.dtype.itemsize > size:
            raise CheckpointError(f"{path.name}: storage {key} is larger than the file (damaged or truncated)")
        if key not in storages:
            # Filled in place once the storages that follow the pickle are read.
            storages[key] = (kind.dtype, numel, torch.zeros(numel, dtype=kind.dtype))
        return storages[key][2]

    result = _Unpickler(handle, path, storage).load()
    keys = plain()
    if not isinstance(keys, list) or set(keys) != set(storages):
        raise CheckpointError(f"{path.name}: the list of storages does not match the pickle (damaged file?)")
    for key in keys:
        dtype, numel, tensor = storages[key]
        header = handle.read(8)
        if len(header) != 8 or int.from_bytes(header, "little") != numel:
            raise CheckpointError(f"{path.name}: storage {key} is truncated or damaged")
        nbytes = numel * tensor.element_size()
        raw = handle.read(nbytes)
        tensor.copy_(_storage_from_bytes(raw, dtype, numel, key))
    return result


def load_checkpoint(path: Path) -> Any:
    """The object ``torch.save`` wrote to ``path``, with inert stand-ins for every class; runs no code."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    try:
        if head.startswith(b"PK\x03\x04"):
            with zipfile.ZipFile(path) as archive:
                return _load_zip(path, archive)
        if head[:1] == b"\x80":
            with open(path, "rb") as handle:
                return _load_legacy(path, handle)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise CheckpointError(
            f"{path.name} is damaged or truncated ({_first_line(exc)}); copy the complete file again"
        ) from None
    except Exception as exc:  # pickle errors, bad tensor views: many types, all meaning a damaged file
        raise CheckpointError(
            f"{path.name} is not a readable PyTorch checkpoint ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    raise CheckpointError(
        f"{path.name} is not a PyTorch checkpoint (no torch.save header; a Git LFS pointer, a text or an HTML "
        "file?); fetch the real file"
    )


def _first_line(exc: BaseException, limit: int = 150) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:limit]
