"""A real Triton Inference Server on this machine, serving a repository ``olvf-export --triton`` wrote.

For trials on one box and for olvf's tests: PyTriton's bundled ``tritonserver``
with its Python backend, running each model's ONNX graph through ONNX Runtime
on the CPU, with the repository's batching, priorities and parameters (the
graph's sha256 the triton backend checks). A production site serves the same
repository with NVIDIA's Triton container and its ONNX Runtime or TensorRT
backend instead (docs/how-to/triton.md).

This file runs in an environment of its own, not olvf's (PyTriton needs
numpy < 2 and a Python whose shared library is the system's, such as
Debian's ``python3``), so it imports nothing of olvf::

    /usr/bin/python3 -m venv ~/.cache/olvf/pytriton
    ~/.cache/olvf/pytriton/bin/pip install nvidia-pytriton 'numpy<2' onnxruntime
    ~/.cache/olvf/pytriton/bin/python export/triton_local.py REPO --grpc-port 8001

It prints ``serving olvf_detector, olvf_ensemble on 127.0.0.1:PORT`` once
the models are ready, and serves until SIGTERM or Ctrl-C. It listens on
loopback only.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

MODELS = ("olvf_detector", "olvf_ensemble")
_NUMPY_TYPES = {"TYPE_FP32": "float32", "TYPE_FP16": "float16", "TYPE_INT64": "int64", "TYPE_INT32": "int32"}


def read_config(path: Path):  # noqa: ANN201 - a protobuf message
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def bind_model(triton, folder: Path, threads: int) -> None:  # noqa: ANN001
    import numpy as np
    import onnxruntime as ort
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    config = read_config(folder / "config.pbtxt")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    from tritonclient.grpc import model_config_pb2

    type_name = {v: k for k, v in model_config_pb2.DataType.items()}
    names = [o.name for o in config.output]

    def tensors(items) -> list:  # noqa: ANN001
        return [
            Tensor(name=t.name, dtype=np.dtype(_NUMPY_TYPES[type_name[t.data_type]]), shape=tuple(t.dims))
            for t in items
        ]

    @batch
    def infer(**feeds):  # noqa: ANN003, ANN202
        outputs = session.run(names, feeds)
        return dict(zip(names, outputs))

    batching = config.dynamic_batching
    model_config = ModelConfig(
        max_batch_size=config.max_batch_size,
        batcher=DynamicBatcher(
            max_queue_delay_microseconds=batching.max_queue_delay_microseconds,
            preferred_batch_size=list(batching.preferred_batch_size) or None,
            priority_levels=batching.priority_levels,
            default_priority_level=batching.default_priority_level,
        ),
    )
    triton.bind(
        model_name=config.name,
        infer_func=infer,
        inputs=tensors(config.input),
        outputs=tensors(config.output),
        config=model_config,
        strict=False,
    )


#: Per model, the repository's parameters (the graph's sha256 among them), which the triton backend reads from
#: the served config. PyTriton has no setting for them; they join the backend parameters it writes.
EXTRA_PARAMETERS: dict[str, dict[str, str]] = {}


def _carry_parameters() -> None:
    from pytriton.models import model as pytriton_model  # PyTriton 0.7: Model._get_triton_model_config

    original = pytriton_model.Model._get_triton_model_config

    def with_parameters(self):  # noqa: ANN001, ANN202
        served = original(self)
        served.backend_parameters.update(EXTRA_PARAMETERS.get(self.model_name, {}))
        return served

    pytriton_model.Model._get_triton_model_config = with_parameters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repository", type=Path, help="the folder olvf-export --triton wrote")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads per model (default 2)")
    parser.add_argument(
        "--workspace",
        type=Path,
        default=None,
        help="PyTriton's workspace (its model sockets; a short path: a socket path holds at most 107 characters)",
    )
    args = parser.parse_args(argv)
    missing = [m for m in MODELS if not (args.repository / m / "config.pbtxt").is_file()]
    if missing:
        print(
            f"error: {args.repository} is no olvf Triton repository (no {', '.join(missing)}); write one "
            "with olvf-export --triton BUNDLE --out REPO",
            file=sys.stderr,
        )
        return 2
    from pytriton.triton import Triton, TritonConfig

    config = TritonConfig(
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        http_address="127.0.0.1",
        http_port=args.http_port,
        allow_metrics=False,
        log_verbose=0,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _carry_parameters()
    for name in MODELS:  # read before binding: PyTriton writes each model's config as it is bound
        parameters = read_config(args.repository / name / "config.pbtxt").parameters
        EXTRA_PARAMETERS[name] = {key: value.string_value for key, value in parameters.items()}
    with Triton(config=config, workspace=args.workspace) as triton:
        for name in MODELS:
            bind_model(triton, args.repository / name, args.threads)
        triton.run()
        print(f"serving {', '.join(MODELS)} on 127.0.0.1:{args.grpc_port}", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
