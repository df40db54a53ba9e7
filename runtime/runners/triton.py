"""The detector and the ensemble served by a Triton Inference Server: the cascade stays here, the graphs there.

``--backend triton --triton-url HOST:PORT`` (gRPC, Triton's port 8001). The
models are those ``olvf-export --triton`` writes (``olvf_detector``,
``olvf_ensemble``). At load the runner checks that the server is live, the
model ready, and that it serves this bundle's graph: the sha256 in the
model's ``olvf_graph_sha256`` parameter must be the bundle's, or the server
is refused with one line (a server serving other weights must never give
this bundle's verdicts). Requests carry a priority (1: ER, the default; 2:
routine), which Triton's dynamic batcher honours. A dead server, a timeout
or an unloaded model is a :class:`BackendError`: ``olvf-infer`` says it per
study, ``olvf-serve`` keeps the study in its spool and screens it once the
server answers again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from olvf.errors import BackendError, UsageError
from olvf.runtime.runners.base import Runner, TensorSpec

if TYPE_CHECKING:
    from olvf.runtime.bundle.files import Bundle

MODEL_NAMES = {"detector": "olvf_detector", "ensemble": "olvf_ensemble"}  # as olvf.export.triton_repository
PRIORITIES = {"er": 1, "routine": 2}
DEFAULT_TIMEOUT_S = 60.0
_NUMPY = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32, "UINT8": np.uint8}


def _client_module() -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        raise BackendError("the triton backend needs tritonclient: pip install 'olvf[triton]'") from None
    return grpcclient


class TritonRunner(Runner):
    name = "triton"

    def __init__(
        self,
        url: str,
        model: str,
        graph_sha256: str,
        *,
        priority: str = "er",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_batch: int | None = None,
    ) -> None:
        super().__init__()
        if priority not in PRIORITIES:
            raise UsageError(f"triton priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
        self.url = url
        self.model = model
        self.graph_sha256 = graph_sha256
        self.priority = priority
        self.timeout_s = float(timeout_s)
        self.max_batch = max_batch
        self._client: Any = None
        self._outputs: list[str] = []

    @classmethod
    def from_bundle(cls, bundle: Bundle, role: str, precision: str | None = None, **options: Any) -> TritonRunner:
        url = options.get("triton_url")
        if not url:
            raise UsageError("--backend triton needs --triton-url HOST:PORT (the server's gRPC port, usually 8001)")
        # The repository serves the FP32 ONNX graphs; the server, not ``device``, decides where they run.
        graph = bundle.manifest.graph(role, "fp32")
        return cls(
            str(url),
            MODEL_NAMES[role],
            bundle.manifest.files[graph.file],
            priority=str(options.get("triton_priority", "er")),
            timeout_s=float(options.get("triton_timeout_s", DEFAULT_TIMEOUT_S)),
            max_batch=graph.max_batch,
        )

    @property
    def device(self) -> str:
        return f"triton://{self.url}"

    def _unreachable(self, exc: BaseException) -> BackendError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return BackendError(f"Triton server {self.url} ({self.model}): {first[:200]}")

    def load_impl(self) -> list[TensorSpec]:
        grpcclient = _client_module()
        from tritonclient.utils import InferenceServerException

        try:
            client = grpcclient.InferenceServerClient(url=self.url)
            if not client.is_server_live(client_timeout=self.timeout_s):
                raise BackendError(f"Triton server {self.url} is not live")
            if not client.is_model_ready(self.model, client_timeout=self.timeout_s):
                raise BackendError(
                    f"Triton server {self.url} has no ready model {self.model}; serve the repository "
                    "olvf-export --triton writes from this bundle"
                )
            config = client.get_model_config(self.model, as_json=True, client_timeout=self.timeout_s)["config"]
            metadata = client.get_model_metadata(self.model, as_json=True, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise self._unreachable(exc) from None
        served = (config.get("parameters", {}).get("olvf_graph_sha256") or {}).get("string_value")
        if served != self.graph_sha256:
            shown = served[:12] if served else "no olvf graph"
            raise BackendError(
                f"Triton server {self.url} serves {self.model} with graph {shown}, not this bundle's "
                f"{self.graph_sha256[:12]}; serve this bundle's repository (olvf-export --triton BUNDLE --out REPO)"
            )
        self._client = client
        self._outputs = [o["name"] for o in metadata["outputs"]]
        specs = []
        for tensor in metadata["inputs"]:
            if tensor["datatype"] not in _NUMPY:  # a model of someone else's under olvf's name
                raise BackendError(
                    f"Triton server {self.url}: {self.model} input {tensor['name']} is {tensor['datatype']}, "
                    "which no olvf graph has; serve this bundle's repository"
                )
            shape = tuple(None if int(d) < 0 else int(d) for d in tensor["shape"])
            specs.append(TensorSpec(tensor["name"], shape, np.dtype(_NUMPY[tensor["datatype"]])))
        return specs

    def run_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        grpcclient = _client_module()
        from tritonclient.utils import InferenceServerException, np_to_triton_dtype

        inputs = []
        for name, array in feeds.items():
            item = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            item.set_data_from_numpy(np.ascontiguousarray(array))
            inputs.append(item)
        outputs = [grpcclient.InferRequestedOutput(name) for name in self._outputs]
        try:
            result = self._client.infer(
                self.model,
                inputs,
                outputs=outputs,
                priority=PRIORITIES[self.priority],
                client_timeout=self.timeout_s,
            )
        except InferenceServerException as exc:
            raise self._unreachable(exc) from None
        return {name: result.as_numpy(name) for name in self._outputs}

    def close_impl(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
