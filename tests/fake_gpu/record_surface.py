"""Record the real TensorRT and cuda-python Python APIs as data, so that the fakes next to this file can be checked.

    python tests/fake_gpu/record_surface.py            # all versions below, into tests/fake_gpu/surface/

Needs PyPI, gcc and a machine WITHOUT an NVIDIA driver (what cuda-python does there is recorded). Not run by the
tests: they read what it wrote (tests/runtime/test_fake_gpu_surface.py).

TensorRT: PyPI's ``tensorrt-cu12-bindings`` wheels are NVIDIA's real Python bindings (``tensorrt_bindings/
tensorrt.so``); only the libraries they link (libnvinfer, libnvonnxparser, libnvinfer_plugin) come from NVIDIA's
separate ``-libs`` wheels. The bindings call nine C entry points of those libraries and no others
(``nm -D --undefined-only``), so stand-in libraries built here with gcc, in which every factory returns NULL,
let the real module import. That gives its enums, classes and signatures exactly, and its behaviour wherever
no library call is involved; and a NULL factory is what libnvinfer returns when it cannot start CUDA, so
``trt.Builder(logger)`` / ``trt.Runtime(logger)`` show their real failure.

cuda-python: the ``cuda-python`` wheels import without a GPU; on a machine without libcuda every call shows
how that version reports a missing driver (12.6 raises, 12.8 and later return ``cudaErrorInsufficientDriver``
with ``None`` for each value).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SURFACE_DIR = Path(__file__).resolve().parent / "surface"

TENSORRT_VERSIONS = ("10.3.0", "10.13.3.9.post1", "10.16.1.11", "11.0.0.114", "11.4.0.106")
CUDA_PYTHON_VERSIONS = ("12.6.2.post1", "12.9.10")

# The C entry points the bindings import from NVIDIA's libraries (identical for 10.x and 11.x).
_STAND_IN = r"""
#include <stddef.h>
void* createInferBuilder_INTERNAL(void* logger, int version) { return NULL; }
void* createInferRuntime_INTERNAL(void* logger, int version) { return NULL; }
void* createInferRefitter_INTERNAL(void* engine, void* logger, int version) { return NULL; }
void* createNvOnnxParser_INTERNAL(void* network, void* logger, int version) { return NULL; }
void* createNvOnnxParserRefitter_INTERNAL(void* refitter, void* logger, int version) { return NULL; }
void* getBuilderPluginRegistry(int capability) { return NULL; }
void* getPluginRegistry(void) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }
int initLibNvInferPlugins(void* logger, const char* name_space) { return 0; }
"""
_LIBRARIES = ("nvinfer", "nvonnxparser", "nvinfer_plugin")

# Classes whose members are recorded: every one that olvf or the fake touches.
TENSORRT_CLASSES = (
    "Builder",
    "IBuilderConfig",
    "INetworkDefinition",
    "ITensor",
    "OnnxParser",
    "ParserError",
    "IOptimizationProfile",
    "ITimingCache",
    "IProgressMonitor",
    "Runtime",
    "ICudaEngine",
    "IExecutionContext",
    "EngineInspector",
    "IHostMemory",
    "ILogger",
    "Logger",
    "Dims",
)
# Messages the bindings themselves raise, looked for in tensorrt.so (the exception types are from NVIDIA's
# python/src/infer/pyCore.cpp: PY_ASSERT_RUNTIME_ERROR, i.e. RuntimeError).
TENSORRT_STRINGS = (
    "Shape provided for min is inconsistent with other shapes.",
    "Shape provided for opt is inconsistent with other shapes.",
    "Shape provided for max is inconsistent with other shapes.",
    "pybind11::init(): factory function returned nullptr",
)
# What olvf calls in cuda.bindings.runtime, with harmless arguments, in the order olvf calls them.
CUDA_CALLS = (
    ("cudaGetDeviceCount", "()"),
    ("cudaGetDeviceProperties", "(0)"),
    ("cudaSetDevice", "(0)"),
    ("cudaStreamCreate", "()"),
    ("cudaMallocHost", "(256)"),
    ("cudaMalloc", "(256)"),
    ("cudaMemcpyAsync", "(0, 0, 0, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, 0)"),
    ("cudaStreamSynchronize", "(0)"),
    ("cudaFree", "(0)"),
    ("cudaFreeHost", "(0)"),
    ("cudaStreamDestroy", "(0)"),
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download(requirement: str, folder: Path, *, deps: bool) -> list[Path]:
    before = set(folder.glob("*.whl"))
    command = [sys.executable, "-m", "pip", "download", requirement, "--only-binary=:all:", "-d", str(folder)]
    subprocess.run([*command, *([] if deps else ["--no-deps"])], check=True, capture_output=True)
    return sorted(set(folder.glob("*.whl")) - before) or sorted(folder.glob("*.whl"))


def _stand_ins(folder: Path, major: int) -> Path:
    target = folder / f"stand-ins-{major}"
    target.mkdir(exist_ok=True)
    source = folder / "stand_in.c"
    source.write_text(_STAND_IN)
    for name in _LIBRARIES:
        soname = f"lib{name}.so.{major}"
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-o", str(target / soname), f"-Wl,-soname,{soname}", str(source)], check=True
        )
    return target


_TENSORRT_PROBE = r"""
import io, json, os, re, sys, tempfile
import tensorrt_bindings as trt

def normalise(text):
    return re.sub(r"\btensorrt_bindings\.tensorrt\.", "tensorrt.", text)

def signatures(obj, name):
    doc = getattr(obj, "__doc__", None) or ""
    found = [normalise(m.group(1)) for m in re.finditer(r"^\d+\. (" + re.escape(name) + r"\(.*)$", doc, re.M)]
    if not found and doc.startswith(name + "("):
        found = [normalise(doc.splitlines()[0])]
    return found

def member(cls, name):
    raw = cls.__dict__.get(name)
    if raw is None:
        return {"kind": "inherited"}
    if isinstance(raw, property):
        return {"kind": "property", "settable": raw.fset is not None}
    if callable(raw):
        return {"kind": "method", "signatures": signatures(raw, name)}
    return {"kind": type(raw).__name__}

def enums():
    found = {}
    def visit(prefix, owner):
        for name in dir(owner):
            value = getattr(owner, name, None)
            if isinstance(value, type) and hasattr(value, "__members__") and name != "__class__":
                key = prefix + name
                if key not in found:
                    found[key] = {m: int(v) for m, v in value.__members__.items()}
                    visit(key + ".", value)
    visit("", trt)
    for cls in CLASSES:
        visit(cls + ".", getattr(trt, cls))
    return found

def failure(call):
    try:
        call()
    except BaseException as exc:
        return [type(exc).__name__, normalise(str(exc))]
    return None

def logger_stream():
    out_fd, err_fd = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(out.fileno(), 1); os.dup2(err.fileno(), 2)
        try:
            logger = trt.Logger(trt.Logger.WARNING)
            logger.log(trt.Logger.WARNING, "probe-warning")
            logger.log(trt.Logger.INFO, "probe-info")
        finally:
            os.dup2(out_fd, 1); os.dup2(err_fd, 2)
        out.seek(0); err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    line = (stdout or stderr).strip()
    return {
        "stream": "stdout" if "probe-warning" in stdout else "stderr" if "probe-warning" in stderr else "none",
        "line_pattern": re.sub(r"^\[[0-9/:-]+\]", "[<date-time>]", line),
        "below_min_severity_printed": "probe-info" in stdout + stderr,
    }

def numpy_name(alias):
    try:
        return trt.nptype(getattr(trt, alias)).__name__
    except TypeError:
        return None

def behaviour():
    class Forgetful(trt.IProgressMonitor):
        def __init__(self):
            pass
    class ForgetfulLogger(trt.ILogger):
        def __init__(self):
            pass
    class Minimal(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
        def log(self, severity, msg):
            pass
    dims = trt.Dims([1, 2, 3])
    return {
        "Builder(Logger()) with a library that cannot start CUDA": failure(lambda: trt.Builder(trt.Logger())),
        "Runtime(Logger()) with a library that cannot start CUDA": failure(lambda: trt.Runtime(trt.Logger())),
        "IProgressMonitor subclass not calling IProgressMonitor.__init__": failure(Forgetful),
        "ILogger subclass not calling ILogger.__init__": failure(ForgetfulLogger),
        "ILogger subclass calling ILogger.__init__": failure(Minimal),
        "Logger.log": logger_stream(),
        "Logger.min_severity default": int(trt.Logger().min_severity),
        "Dims([1, 2, 3])": {
            "tuple": list(tuple(dims)), "len": len(dims), "equals tuple": dims == (1, 2, 3),
            "equals list": dims == [1, 2, 3], "repr": repr(dims), "index -1": dims[-1],
        },
        "str(DataType.HALF)": str(trt.DataType.HALF),
        "nptype": {name: numpy_name(name) for name in ("float32", "float16", "int8", "int32", "int64", "uint8",
                                                      "bfloat16") if hasattr(trt, name)},
    }

binary = open(os.path.join(os.path.dirname(trt.__file__), "tensorrt.so"), "rb").read()
CLASSES = json.loads(sys.argv[1])
record = {
    "version": trt.__version__,
    "module": sorted(n for n in dir(trt) if not n.startswith("_")),
    "enums": enums(),
    "classes": {
        cls: {name: member(getattr(trt, cls), name) for name in sorted(dir(getattr(trt, cls)))
              if not name.startswith("_") or name in ("__init__", "__bool__", "__len__", "__getitem__", "__iter__")}
        for cls in CLASSES if hasattr(trt, cls)
    },
    "behaviour": behaviour(),
    "strings_in_binary": [s for s in json.loads(sys.argv[2]) if s.encode() in binary],
}
print(json.dumps(record))
"""


def record_tensorrt(version: str, work: Path) -> dict:
    (wheel,) = _download(f"tensorrt-cu12-bindings=={version}", work, deps=False)[-1:]
    unpacked = work / wheel.stem
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    major = int(version.split(".")[0])
    env = dict(os.environ, PYTHONPATH=str(unpacked), LD_LIBRARY_PATH=str(_stand_ins(work, major)))
    done = subprocess.run(
        [sys.executable, "-c", _TENSORRT_PROBE, json.dumps(TENSORRT_CLASSES), json.dumps(TENSORRT_STRINGS)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    record = json.loads(done.stdout)
    return {
        "what": "the real TensorRT Python bindings with stand-in libraries (tests/fake_gpu/record_surface.py)",
        "source": {
            "wheel": wheel.name,
            "sha256": _sha256(wheel),
            "from": "https://pypi.org/project/tensorrt-cu12-bindings/",
        },
        **record,
    }


_CUDA_PROBE = r"""
import json, sys
from cuda.bindings import runtime as rt
import cuda.bindings

def shape(value):
    if value is None:
        return None
    if isinstance(value, rt.cudaError_t):
        return value.name
    return type(value).__name__

calls = []
for name, arguments in json.loads(sys.argv[1]):
    function = getattr(rt, name)
    entry = {"name": name, "signature": (function.__doc__ or "").splitlines()[0] if function.__doc__ else ""}
    try:
        result = eval("function" + arguments)
        entry["returns"] = [shape(v) for v in result]
    except BaseException as exc:
        entry["raises"] = [type(exc).__name__, str(exc)]
    calls.append(entry)
try:
    from cuda.bindings.utils import get_cuda_native_handle  # noqa: F401
    utils = True
except ImportError:
    utils = False
try:
    error_name = [shape(v) if not isinstance(v, bytes) else "bytes" for v in rt.cudaGetErrorName(rt.cudaError_t(35))]
except BaseException as exc:
    error_name = [type(exc).__name__, str(exc)]

# What each call returns on an error WITH a driver (e.g. cudaErrorNoDevice) cannot be provoked here: the
# Cython source shipped in the wheel says it.
import os, re
source = open(os.path.join(os.path.dirname(rt.__file__), "runtime.pyx")).read()
returns = {}
for name, _ in json.loads(sys.argv[1]):
    body = re.search(r"^def " + name + r"\(.*?(?=^(?:@|def |cdef class))", source, re.S | re.M)
    found = re.findall(r"^\s+return \(.*$", body.group(0), re.M) if body else []
    returns[name] = [" ".join(line.split()) for line in found]
print(json.dumps({
    "version": getattr(cuda.bindings, "__version__", "?"),
    "calls_without_a_driver": calls,
    "cudaGetErrorName(cudaError_t(35))": error_name,
    "return_statements_in_runtime_pyx": returns,
    "cuda.bindings.utils.get_cuda_native_handle": utils,
    "cudaError_t": {m: int(v) for m, v in rt.cudaError_t.__members__.items()},
    "cudaMemcpyKind": {m: int(v) for m, v in rt.cudaMemcpyKind.__members__.items()},
}))
"""


def record_cuda_python(version: str, work: Path) -> dict:
    folder = work / f"cuda-python-{version}"
    folder.mkdir()
    wheels = _download(f"cuda-python=={version}", folder, deps=True)
    unpacked = folder / "unpacked"
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(unpacked)
    env = dict(os.environ, PYTHONPATH=str(unpacked))
    # -S: no site-packages, so that no other cuda-python installed here mixes into the `cuda` namespace.
    done = subprocess.run(
        [sys.executable, "-S", "-c", _CUDA_PROBE, json.dumps(CUDA_CALLS)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        "what": "real cuda-python on a machine without an NVIDIA driver (tests/fake_gpu/record_surface.py)",
        "source": {w.name: _sha256(w) for w in wheels},
        **json.loads(done.stdout),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SURFACE_DIR)
    args = parser.parse_args()
    args.out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for version in TENSORRT_VERSIONS:
            record = record_tensorrt(version, work)
            (args.out / f"tensorrt-{version}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
            print(f"tensorrt {version}: {len(record['enums'])} enums, {len(record['classes'])} classes")
        for version in CUDA_PYTHON_VERSIONS:
            record = record_cuda_python(version, work)
            (args.out / f"cuda-python-{version}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
            print(f"cuda-python {version}: {len(record['calls_without_a_driver'])} calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
