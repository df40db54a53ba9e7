"""Which files an ONNX graph would make its runtime read: the ``location`` of its external-data tensors.

A tensor stored outside the ``.onnx`` file names its file in
``TensorProto.external_data`` (key ``location``). ONNX Runtime before 1.24
reads whatever path it names, ``../../etc/passwd`` included, and TensorRT's
ONNX parser resolves the same field; the Jetson image's ONNX Runtime is 1.23
(the last for its Python). olvf therefore checks the graphs itself, before any
backend opens them: :func:`external_data_locations` lists every location, and
the bundle accepts a graph only when each is a file the manifest lists, so
that it is hash-checked like the graph (:meth:`olvf.runtime.bundle.files.Bundle.file`).

The protobuf wire format is walked along the few fields that can hold a
tensor (graph initializers, sparse initializers, node attributes, subgraphs,
functions, training info), skipping everything else by its length, on a
memory map: no copy of the weights, no ``onnx`` package, no recursion.
"""

from __future__ import annotations

import mmap
from pathlib import Path

# field numbers from onnx.proto3, per message type: field -> message type it holds
_MODEL, _GRAPH, _NODE, _ATTRIBUTE, _FUNCTION, _TRAINING, _SPARSE, _TENSOR = range(8)
_CHILDREN: dict[int, dict[int, int]] = {
    _MODEL: {7: _GRAPH, 20: _TRAINING, 25: _FUNCTION},
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},
    _NODE: {5: _ATTRIBUTE},
    _ATTRIBUTE: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _FUNCTION: {7: _NODE},
    _TRAINING: {1: _GRAPH, 2: _GRAPH},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},
}
_EXTERNAL_DATA, _DATA_LOCATION, _EXTERNAL = 13, 14, 1


class MalformedGraph(ValueError):
    """The bytes are not a protobuf message of the expected shape."""


def _varint(data: memoryview, at: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= end or shift > 63:
            raise MalformedGraph("a varint runs past its message")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _fields(data: memoryview, start: int, end: int):
    """(field number, wire type, payload) of each field of one message; payload: (start, end) or an int."""
    at = start
    while at < end:
        key, at = _varint(data, at, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at, end)
            yield number, wire, value
        elif wire == 1:
            at += 8
        elif wire == 2:
            length, at = _varint(data, at, end)
            if at + length > end:
                raise MalformedGraph("a field runs past its message")
            yield number, wire, (at, at + length)
            at += length
        elif wire == 5:
            at += 4
        else:
            raise MalformedGraph(f"wire type {wire} (groups) is not used by ONNX")
    if at != end:
        raise MalformedGraph("a message ends inside a field")


def _tensor_location(data: memoryview, start: int, end: int) -> tuple[str | None, bool]:
    """A tensor's external-data location (or None) and whether it says its data is external."""
    location, external = None, False
    for number, wire, payload in _fields(data, start, end):
        if number == _DATA_LOCATION and wire == 0:
            external = payload == _EXTERNAL
        elif number == _EXTERNAL_DATA and wire == 2:
            key = value = None
            for inner, inner_wire, span in _fields(data, *payload):
                if inner_wire == 2 and inner in (1, 2):
                    text = bytes(data[span[0] : span[1]]).decode("utf-8", "replace")
                    key, value = (text, value) if inner == 1 else (key, text)
            if key == "location":
                location = value
    return location, external


def external_data_locations(path: str | Path) -> list[str]:
    """Every external-data location the graph names (``"<unnamed>"`` for external data without one)."""
    found: list[str] = []
    with open(path, "rb") as handle:
        if handle.seek(0, 2) == 0:
            return found
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            data = memoryview(mapped)
            try:
                stack = [(_MODEL, 0, len(data))]
                while stack:
                    kind, start, end = stack.pop()
                    if kind == _TENSOR:
                        location, external = _tensor_location(data, start, end)
                        if location is not None:
                            found.append(location)
                        elif external:
                            found.append("<unnamed>")
                        continue
                    children = _CHILDREN[kind]
                    for number, wire, payload in _fields(data, start, end):
                        if wire == 2 and number in children:
                            stack.append((children[number], *payload))
            finally:
                data.release()
    return found
