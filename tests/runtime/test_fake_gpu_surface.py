"""The fake TensorRT and cuda-python (tests/fake_gpu) against the REAL ones, so that the fakes cannot drift again.

tests/fake_gpu/surface holds what the real APIs are, recorded by tests/fake_gpu/record_surface.py from PyPI's
``tensorrt-cu12-bindings`` wheels (NVIDIA's real Python bindings, imported with stand-in libraries) and from
cuda-python on a machine without a driver; each record names its wheel and sha256. Where cuda-python is
installed here, the last tests exercise it for real as well.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_gpu.record_surface import TENSORRT_CLASSES
from fake_gpu_fixture import FAKE_GPU_DIR, use_fake_gpu

SURFACE = FAKE_GPU_DIR / "surface"
TENSORRT = sorted(SURFACE.glob("tensorrt-*.json"))
CUDA_PYTHON = sorted(SURFACE.glob("cuda-python-*.json"))
OLVF_TENSORRT = Path(__file__).resolve().parents[2] / "runtime" / "runners" / "tensorrt"

# The fake's classes whose public members must all exist in the real bindings: the ones recorded.
FAKE_CLASSES = TENSORRT_CLASSES
# Enums the fake defines; they must have exactly the real members and values.
FAKE_ENUMS = (
    "BuilderFlag",
    "NetworkDefinitionCreationFlag",
    "DataType",
    "TensorIOMode",
    "TensorLocation",
    "ProfilingVerbosity",
    "LayerInformationFormat",
    "MemoryPoolType",
    "ErrorCode",
    "ILogger.Severity",
)
# What olvf calls on TensorRT objects: (class, member). Version-specific calls are guarded in olvf's code.
OLVF_CALLS = (
    ("Builder", "create_network"),
    ("Builder", "create_builder_config"),
    ("Builder", "create_optimization_profile"),
    ("Builder", "build_serialized_network"),
    ("OnnxParser", "parse_from_file"),
    ("OnnxParser", "num_errors"),
    ("OnnxParser", "get_error"),
    ("IBuilderConfig", "set_flag"),
    ("IBuilderConfig", "profiling_verbosity"),
    ("IBuilderConfig", "progress_monitor"),
    ("IBuilderConfig", "create_timing_cache"),
    ("IBuilderConfig", "set_timing_cache"),
    ("IBuilderConfig", "get_timing_cache"),
    ("IBuilderConfig", "add_optimization_profile"),
    ("IOptimizationProfile", "set_shape"),
    ("ITimingCache", "serialize"),
    ("IProgressMonitor", "phase_start"),
    ("IProgressMonitor", "step_complete"),
    ("IProgressMonitor", "phase_finish"),
    ("ILogger", "log"),
    ("Runtime", "deserialize_cuda_engine"),
    ("ICudaEngine", "create_engine_inspector"),
    ("ICudaEngine", "create_execution_context"),
    ("ICudaEngine", "num_io_tensors"),
    ("ICudaEngine", "get_tensor_name"),
    ("ICudaEngine", "get_tensor_mode"),
    ("ICudaEngine", "get_tensor_dtype"),
    ("ICudaEngine", "get_tensor_profile_shape"),
    ("EngineInspector", "get_engine_information"),
    ("IExecutionContext", "set_input_shape"),
    ("IExecutionContext", "get_tensor_shape"),
    ("IExecutionContext", "set_tensor_address"),
    ("IExecutionContext", "execute_async_v3"),
)


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _parameters(signature: str) -> list[str]:
    """Parameter names of a pybind11 signature line "name(self: T, a: U, b: V = d) -> R", self excluded."""
    inside = signature[signature.index("(") + 1 : signature.rindex(")")]
    names, depth, current = [], 0, ""
    for char in inside + ",":
        if char in "([{<":
            depth += 1
        elif char in ")]}>":
            depth -= 1
        if char == "," and depth == 0:
            name = current.split(":")[0].split("=")[0].strip()
            if name and name not in ("self", "*args", "**kwargs"):
                names.append(name)
            current = ""
        else:
            current += char
    return names


def _fake_parameters(function: Any) -> list[str]:
    return [
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def test_records_cover_the_versions_olvf_supports() -> None:
    majors = {_load(p)["version"].split(".")[0] for p in TENSORRT}
    assert majors == {"10", "11"} and len(TENSORRT) >= 4
    assert {_load(p)["version"][:4] for p in CUDA_PYTHON} == {"12.6", "12.9"}
    for path in TENSORRT + CUDA_PYTHON:
        record = _load(path)
        assert record["source"] and "record_surface.py" in record["what"]  # where it came from


# --- TensorRT ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TENSORRT, ids=_ids(TENSORRT))
def test_fake_enums_are_the_real_ones(path: Path, monkeypatch) -> None:
    record = _load(path)
    use_fake_gpu(monkeypatch, version=record["version"])
    import tensorrt as trt

    for name in FAKE_ENUMS:
        owner: Any = trt
        for part in name.split("."):
            owner = getattr(owner, part)
        fake = {member: int(value) for member, value in owner.__members__.items()}
        assert fake == record["enums"][name], f"{name} in TensorRT {record['version']}"


@pytest.mark.parametrize("path", TENSORRT, ids=_ids(TENSORRT))
def test_fake_offers_nothing_the_real_bindings_lack(path: Path, monkeypatch) -> None:
    """A member the fake has and TensorRT lacks would let olvf call something that fails on a device."""
    record = _load(path)
    use_fake_gpu(monkeypatch, version=record["version"])
    import tensorrt as trt

    for cls in FAKE_CLASSES:
        real = record["classes"][cls]
        fake = getattr(trt, cls)
        # IHostMemory is a bytes subclass in the fake (see its docstring): what an instance lets through counts.
        probe = fake(b"") if cls == "IHostMemory" else fake
        offered = {
            name
            for name in dir(fake)
            if hasattr(probe, name)
            and (
                (not name.startswith("_") and name not in ("Severity", *record["enums"]["ILogger.Severity"]))
                or (name in ("__bool__", "__len__", "__getitem__") and cls != "IHostMemory")
            )
        }
        inherited = {n for n in dir(object)} | {n for n in dir(int)}
        extra = sorted(n for n in offered - set(real) if n not in inherited or n in ("__bool__", "__len__"))
        assert not extra, f"the fake {cls} has {extra}, TensorRT {record['version']} does not"


@pytest.mark.parametrize("path", TENSORRT, ids=_ids(TENSORRT))
def test_fake_methods_take_the_real_parameter_names(path: Path, monkeypatch) -> None:
    record = _load(path)
    use_fake_gpu(monkeypatch, version=record["version"])
    import tensorrt as trt

    for cls in FAKE_CLASSES:
        fake = getattr(trt, cls)
        for name, real in record["classes"][cls].items():
            if real["kind"] != "method" or not real["signatures"] or name.startswith("__"):
                continue
            method = fake.__dict__.get(name) or getattr(fake, name, None)
            if method is None or not callable(method):
                continue
            overloads = [_parameters(s) for s in real["signatures"]]
            assert _fake_parameters(method) in overloads, (
                f"{cls}.{name}: fake {_fake_parameters(method)}, real {overloads}"
            )


@pytest.mark.parametrize("path", TENSORRT, ids=_ids(TENSORRT))
def test_everything_olvf_calls_exists_in_the_real_bindings(path: Path) -> None:
    record = _load(path)
    for cls, member in OLVF_CALLS:
        assert member in record["classes"][cls], f"{cls}.{member} is not in TensorRT {record['version']}"
    # Every trt.<Name> in olvf's TensorRT code is in the module; the only version-specific one is guarded.
    source = "\n".join(p.read_text() for p in OLVF_TENSORRT.glob("*.py"))
    for name in set(re.findall(r"\btrt\.([A-Za-z]\w*)", source)):
        assert name in record["module"], f"trt.{name} is not in TensorRT {record['version']}"
    for enum, member in set(re.findall(r"\btrt\.([A-Z]\w*)\.([A-Z][A-Z0-9_]+)\b", source)):
        if enum in record["enums"] and member not in record["enums"][enum]:
            assert (enum, member) == ("BuilderFlag", "FP16") and record["version"].startswith("11."), (
                f"trt.{enum}.{member} is not in TensorRT {record['version']}"
            )


@pytest.mark.parametrize("path", TENSORRT, ids=_ids(TENSORRT))
def test_builder_and_runtime_fail_as_the_real_ones_when_tensorrt_cannot_start_cuda(path: Path, monkeypatch) -> None:
    record = _load(path)
    use_fake_gpu(monkeypatch, version=record["version"], tensorrt_cuda_error=35)
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    assert int(cudart.cudaGetDeviceCount()[0]) == 0  # cuda-python works; TensorRT's own CUDA start fails
    for what in ("Builder", "Runtime"):
        expected = record["behaviour"][f"{what}(Logger()) with a library that cannot start CUDA"]
        with pytest.raises(Exception) as info:
            getattr(trt, what)(trt.Logger())
        assert [type(info.value).__name__, str(info.value)] == expected


@pytest.mark.parametrize("path", TENSORRT, ids=_ids(TENSORRT))
def test_subclasses_that_skip_the_base_init_are_refused_when_made(path: Path, monkeypatch) -> None:
    record = _load(path)
    use_fake_gpu(monkeypatch, version=record["version"])
    import tensorrt as trt

    for base in ("IProgressMonitor", "ILogger"):
        forgetful = type("Forgetful", (getattr(trt, base),), {"__init__": lambda self: None})
        kind, message = record["behaviour"][f"{base} subclass not calling {base}.__init__"]
        with pytest.raises(TypeError) as info:
            forgetful()
        assert kind == "TypeError" and str(info.value).endswith(message.split("tensorrt.", 1)[1])


@pytest.mark.parametrize("path", TENSORRT, ids=_ids(TENSORRT))
def test_logger_prints_where_and_how_the_real_one_does(path: Path, monkeypatch) -> None:
    record = _load(path)
    expected = record["behaviour"]["Logger.log"]
    use_fake_gpu(monkeypatch, version=record["version"])
    import tensorrt as trt

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        logger = trt.Logger(trt.Logger.WARNING)
        logger.log(trt.Logger.WARNING, "probe-warning")
        logger.log(trt.Logger.INFO, "probe-info")
    printed = {"stdout": out.getvalue(), "stderr": err.getvalue()}
    assert expected["stream"] == "stdout" and not printed["stderr"]
    pattern = re.escape(expected["line_pattern"]).replace(
        re.escape("[<date-time>]"), r"\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\]"
    )
    assert re.fullmatch(pattern, printed["stdout"].strip())
    assert int(trt.Logger().min_severity) == record["behaviour"]["Logger.min_severity default"]


@pytest.mark.parametrize("path", TENSORRT, ids=_ids(TENSORRT))
def test_small_values_behave_as_the_real_ones(path: Path, monkeypatch) -> None:
    record = _load(path)
    behaviour = record["behaviour"]
    use_fake_gpu(monkeypatch, version=record["version"])
    import tensorrt as trt

    dims = trt.Dims([1, 2, 3])
    real = behaviour["Dims([1, 2, 3])"]
    assert [list(tuple(dims)), len(dims), dims == (1, 2, 3), dims == [1, 2, 3], repr(dims), dims[-1]] == [
        real["tuple"],
        real["len"],
        real["equals tuple"],
        real["equals list"],
        real["repr"],
        real["index -1"],
    ]
    assert str(trt.DataType.HALF) == behaviour["str(DataType.HALF)"]
    for alias, numpy_name in behaviour["nptype"].items():
        if numpy_name is None:
            with pytest.raises(TypeError):
                trt.nptype(getattr(trt, alias))
        else:
            assert trt.nptype(getattr(trt, alias)).__name__ == numpy_name


@pytest.mark.parametrize("path", TENSORRT, ids=_ids(TENSORRT))
def test_set_shape_raises_the_real_error(path: Path, monkeypatch) -> None:
    """NVIDIA's pyCore.cpp raises RuntimeError (PY_ASSERT_RUNTIME_ERROR) with messages found in tensorrt.so."""
    record = _load(path)
    use_fake_gpu(monkeypatch, version=record["version"])
    import tensorrt as trt

    profile = trt.Builder(trt.Logger()).create_optimization_profile()
    assert bool(profile)  # isValid(): nothing inconsistent set
    with pytest.raises(RuntimeError) as info:
        profile.set_shape("x", (4, 1, 4, 4), (2, 1, 4, 4), (1, 1, 4, 4))
    assert str(info.value) in record["strings_in_binary"]
    with pytest.raises(TypeError):
        len(profile)  # no __len__ in the real bindings


# --- cuda-python ---------------------------------------------------------------------------------

CALL_ARGUMENTS = {
    "cudaGetDeviceCount": (),
    "cudaGetDeviceProperties": (0,),
    "cudaSetDevice": (0,),
    "cudaStreamCreate": (),
    "cudaMallocHost": (256,),
    "cudaMalloc": (256,),
    "cudaMemcpyAsync": (0, 0, 0, 1, 0),
    "cudaStreamSynchronize": (0,),
    "cudaFree": (0,),
    "cudaFreeHost": (0,),
    "cudaStreamDestroy": (0,),
}


def _shape(value: Any) -> Any:
    if value is None:
        return None
    return value.name if type(value).__name__ == "cudaError_t" else type(value).__name__


def _calls(cudart: Any) -> list[dict[str, Any]]:
    done = []
    for name, arguments in CALL_ARGUMENTS.items():
        entry: dict[str, Any] = {"name": name}
        try:
            entry["returns"] = [_shape(v) for v in getattr(cudart, name)(*arguments)]
        except Exception as exc:  # noqa: BLE001 - what the call does is the point
            entry["raises"] = [type(exc).__name__, str(exc)]
        done.append(entry)
    return done


@pytest.mark.parametrize("path", CUDA_PYTHON, ids=_ids(CUDA_PYTHON))
def test_fake_cudart_reports_a_missing_driver_as_the_real_one(path: Path, monkeypatch) -> None:
    record = _load(path)
    use_fake_gpu(monkeypatch, cuda_python=record["version"], driver="missing")
    from cuda.bindings import runtime as cudart

    real = [{k: v for k, v in call.items() if k != "signature"} for call in record["calls_without_a_driver"]]
    assert _calls(cudart) == real


@pytest.mark.parametrize("path", CUDA_PYTHON, ids=_ids(CUDA_PYTHON))
def test_fake_cudart_fails_calls_as_the_real_source_says(path: Path, monkeypatch) -> None:
    """With a driver but no usable device (a Jetson user without /dev/nvmap access: error 100 or 801)."""
    record = _load(path)
    use_fake_gpu(monkeypatch, cuda_python=record["version"], cuda_init_error=801)
    from cuda.bindings import runtime as cudart

    for call in _calls(cudart):
        returns = record["return_statements_in_runtime_pyx"][call["name"]]
        failure = next((r for r in returns if "None" in r), returns[-1])  # 12.6 has one return for both cases
        parts = [p.strip() for p in failure[failure.index("(") + 1 : failure.rindex(")")].split(",") if p.strip()]
        assert call["returns"] == ["cudaErrorNotSupported"] + [None if p == "None" else "value" for p in parts[1:]] or (
            call["returns"][0] == "cudaErrorNotSupported"
            and [None if v is None else "value" for v in call["returns"][1:]]
            == [None if p == "None" else "value" for p in parts[1:]]
        ), (call, failure)


@pytest.mark.parametrize("path", CUDA_PYTHON, ids=_ids(CUDA_PYTHON))
def test_fake_cudart_names_and_helpers_are_real(path: Path, monkeypatch) -> None:
    record = _load(path)
    use_fake_gpu(monkeypatch, cuda_python=record["version"])
    from cuda.bindings import runtime as cudart

    fake_errors = {m: int(v) for m, v in cudart.cudaError_t.__members__.items()}
    assert fake_errors.items() <= record["cudaError_t"].items()
    assert {m: int(v) for m, v in cudart.cudaMemcpyKind.__members__.items()} == record["cudaMemcpyKind"]
    error, name = cudart.cudaGetErrorName(cudart.cudaError_t.cudaErrorInsufficientDriver)
    assert [_shape(error), type(name).__name__] == record["cudaGetErrorName(cudaError_t(35))"]
    try:
        from cuda.bindings.utils import get_cuda_native_handle  # noqa: F401

        has_utils = True
    except ImportError:
        has_utils = False
    assert has_utils == record["cuda.bindings.utils.get_cuda_native_handle"]


_REAL_PROBE = """
import json
from cuda.bindings import runtime as cudart
import cuda.bindings
calls = {calls}
def shape(v):
    return None if v is None else (v.name if type(v).__name__ == "cudaError_t" else type(v).__name__)
out = []
for name, args in calls.items():
    entry = {{"name": name}}
    try:
        entry["returns"] = [shape(v) for v in getattr(cudart, name)(*args)]
    except Exception as exc:
        entry["raises"] = [type(exc).__name__, str(exc)]
    out.append(entry)
print(json.dumps({{"version": cuda.bindings.__version__, "calls": out}}))
"""


def _installed_cuda_python() -> dict[str, Any] | None:
    probe = _REAL_PROBE.format(calls=repr(CALL_ARGUMENTS))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_the_installed_cuda_python_behaves_as_the_fake_does(monkeypatch) -> None:
    """Real cuda-python, exercised here: without a driver it must answer as the fake's no-driver mode does."""
    real = _installed_cuda_python()
    if real is None:
        pytest.skip("cuda-python is not installed here")
    if real["calls"][0].get("returns", [None])[0] != "cudaErrorInsufficientDriver":
        pytest.skip(f"this machine has a CUDA driver ({real['calls'][0]}): the no-driver comparison does not apply")
    use_fake_gpu(monkeypatch, cuda_python=real["version"], driver="missing")
    from cuda.bindings import runtime as cudart

    assert _calls(cudart) == real["calls"], f"cuda-python {real['version']}"


def test_the_extras_pin_the_versions_whose_real_api_was_checked() -> None:
    """pyproject's [tensorrt] and [jetson] extras allow only versions recorded in tests/fake_gpu/surface."""
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    tensorrt = [_load(p)["version"] for p in TENSORRT]
    cuda_python = [_load(p)["version"] for p in CUDA_PYTHON]

    def allowed(extra: str, name: str, recorded: list[str]) -> list[str]:
        (requirement,) = [Requirement(r) for r in extras[extra] if Requirement(r).name == name]
        return [v for v in recorded if requirement.specifier.contains(v, prereleases=True)]

    # x86: TensorRT 10 from 10.3 (JetPack 6's) to the last 10.x, never 11 (ONNX Runtime's provider is built on 10).
    assert allowed("tensorrt", "tensorrt-cu12", tensorrt) == [v for v in tensorrt if v.startswith("10.")]
    assert allowed("tensorrt", "cuda-python", cuda_python) == ["12.9.10"]
    assert allowed("jetson", "cuda-python", cuda_python) == ["12.6.2.post1"]
