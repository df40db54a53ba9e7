"""The bundle's own domain: does a study look, to the bundle's own networks, like the studies it was checked on?

A classifier answers "normal, old or fresh" for any picture it is given,
including one nothing like its training set. This check measures how far
each crop's pooled features (what the heads read, an output of the fused
graph) lie from those of in-domain studies, the Mahalanobis distance of Lee
et al. 2018 ("A simple unified framework for detecting out-of-distribution
samples and adversarial attacks") with a low-rank covariance, so that a few
hundred vertebrae are enough to fit it.

Method ``pca-mahalanobis-log``, version 1. The pooled features (averages of
ReLU outputs, so never negative) are taken as logarithms, ``z = log(x + c)``
with ``c`` a thousandth of the model's median in-domain feature: exposure
and contrast scale many features at once, which a logarithm turns into a
shift that principal directions describe (measured on the demo's phantoms:
with raw features the rare dark, high-contrast films lay at five to ten
times a typical distance, and their held-out 99th percentile at 3 to 4,
with logarithms at 2.2). Per model ``m``, fitted on in-domain vertebrae
(:mod:`olvf.export.domain`): the mean ``mu`` of ``z``, its top ``k``
principal directions ``V`` (k, K) with variances ``lambda``, and ``sigma2``,
the mean squared residual outside that subspace. A crop with
``p = V (z - mu)`` and residual ``r = (z - mu) - V^T p`` is at

    d_m = (sum_i p_i^2 / lambda_i + |r|^2 / sigma2) / (k + 1) / s_m

where ``s_m`` (fitted on held-out in-domain vertebrae) makes held-out
in-domain crops average 1 for every model, so each model counts equally. A
vertebra's distance is the mean of ``d_m`` over the models; a study's is
the median over its vertebrae, so one odd vertebra does not decide it. A
study whose distance is over the manifest's threshold
(:class:`olvf.runtime.bundle.manifest.DomainSpec`, set on held-out in-domain
studies at a stated false-rejection rate) lies outside the bundle's domain.

The statistics are a ``.npz`` file in the bundle, listed and hashed in the
manifest like every file, read with ``allow_pickle=False``. numpy only.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from olvf.atomic import write_bytes_atomic
from olvf.errors import BundleError
from olvf.runtime.bundle.files import Bundle
from olvf.runtime.bundle.manifest import DomainSpec, Manifest

METHOD = "pca-mahalanobis-log"
VERSION = 1
FORMAT = "olvf-domain-statistics"
_ARRAYS = ("offset", "mean", "components", "eigenvalues", "residual_variance", "scale")


@dataclass(frozen=True, eq=False)
class ModelStatistics:
    """One model's in-domain statistics (see the module docstring); float64, in the space of log features."""

    offset: float  # c in z = log(x + c)
    mean: np.ndarray  # (K,)
    components: np.ndarray  # (k, K), orthonormal rows
    eigenvalues: np.ndarray  # (k,)
    residual_variance: float
    scale: float = 1.0

    @property
    def components_count(self) -> int:
        return int(self.components.shape[0])

    @property
    def feature_count(self) -> int:
        return int(self.mean.shape[0])

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Pooled features (N, K) -> ``z``, the space the statistics live in."""
        return np.log(np.maximum(np.asarray(features, dtype=np.float64), 0.0) + self.offset)

    def unscaled(self, features: np.ndarray) -> np.ndarray:
        """``d_m`` before the held-out scale ``s_m``: pooled features (N, K) -> (N,)."""
        centred = self.transform(features) - self.mean
        projected = centred @ self.components.T
        residual = centred - projected @ self.components
        total = (projected**2 / self.eigenvalues).sum(axis=1) + (residual**2).sum(axis=1) / self.residual_variance
        return total / (self.components_count + 1)

    def distances(self, features: np.ndarray) -> np.ndarray:
        return self.unscaled(features) / self.scale


@dataclass(frozen=True, eq=False)
class DomainModel:
    """A bundle's domain statistics and record: distances of vertebrae and studies, and the threshold."""

    spec: DomainSpec
    statistics: dict[str, ModelStatistics]

    @property
    def threshold(self) -> float:
        """A study whose :meth:`study_distance` is over this lies outside the bundle's domain."""
        return float(self.spec.threshold)

    def vertebra_distances(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Each crop's distance (N,), the mean over models, from each model's pooled features (N, K).

        A crop with a non-finite feature is at an infinite distance: it is like nothing the bundle was fitted on.
        """
        missing = [name for name in self.statistics if name not in features]
        if missing:
            raise BundleError(
                f"the domain check needs the pooled features of {', '.join(missing)}, which the classification does "
                "not hold (a bundle exported before the graph output them?); re-export the bundle"
            )
        per_model = []
        for name, stats in self.statistics.items():
            array = np.asarray(features[name])
            if array.ndim != 2 or array.shape[1] != stats.feature_count:
                raise BundleError(
                    f"{name} features have shape {array.shape}, the domain statistics take (N, {stats.feature_count}); "
                    "fit the domain again for this bundle"
                )
            finite = np.isfinite(array).all(axis=1)
            with np.errstate(all="ignore"):
                distance = stats.distances(np.where(finite[:, None], array, 0.0))
            per_model.append(np.where(finite, distance, np.inf))
        counts = {len(d) for d in per_model}
        if len(counts) > 1:
            raise BundleError(f"the models' features cover different numbers of crops ({sorted(counts)})")
        return np.mean(per_model, axis=0) if per_model else np.zeros(0)

    def study_distance(self, distances: np.ndarray) -> float | None:
        """The median of a study's vertebra distances; None for a study without vertebrae (nothing to measure)."""
        distances = np.asarray(distances, dtype=np.float64).reshape(-1)
        if len(distances) == 0:
            return None
        return float(np.median(distances))

    def outside(self, study_distance: float | None) -> bool:
        """Whether a study at ``study_distance`` lies outside the domain (a study without vertebrae does not)."""
        return study_distance is not None and not study_distance <= self.threshold


def statistics_bytes(statistics: Mapping[str, ModelStatistics]) -> bytes:
    """The ``.npz`` file's bytes (no pickled objects; read back by :func:`read_statistics`)."""
    arrays: dict[str, np.ndarray] = {"format": np.array(FORMAT), "version": np.array(VERSION, np.int64)}
    for name, stats in statistics.items():
        arrays[f"{name}.offset"] = np.array(stats.offset, np.float64)
        arrays[f"{name}.mean"] = np.asarray(stats.mean, np.float64)
        arrays[f"{name}.components"] = np.asarray(stats.components, np.float64)
        arrays[f"{name}.eigenvalues"] = np.asarray(stats.eigenvalues, np.float64)
        arrays[f"{name}.residual_variance"] = np.array(stats.residual_variance, np.float64)
        arrays[f"{name}.scale"] = np.array(stats.scale, np.float64)
    buffer = io.BytesIO()
    # No allow_pickle=False here: numpy < 2.1 (JetPack's) would store it as an array; nothing here is an object.
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def write_statistics(path: Path, statistics: Mapping[str, ModelStatistics]) -> None:
    write_bytes_atomic(Path(path), statistics_bytes(statistics), force=True)


class _Unfit(ValueError):
    """What is wrong with a statistics file, in a phrase."""


def read_statistics(path: Path, spec: DomainSpec, manifest: Manifest) -> dict[str, ModelStatistics]:
    """The statistics in ``path``, checked against the record and the bundle's models; ValueError (a phrase)."""
    try:
        with open(path, "rb") as handle:  # closed whatever numpy makes of its content
            data = np.load(handle, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an archive")
            with data:
                arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise _Unfit(f"not a readable .npz file ({type(exc).__name__})") from None
    if str(arrays.get("format", "")) != FORMAT:
        raise _Unfit(f"not olvf domain statistics (format {FORMAT!r} expected)")
    version = arrays.get("version")
    if version is None or version.shape != () or int(version) != spec.version:
        raise _Unfit(f"statistics version {version} does not match the manifest's {spec.version}")
    if spec.method != METHOD or spec.version != VERSION:
        raise _Unfit(f"method {spec.method} version {spec.version} is not the one this olvf reads ({METHOD} {VERSION})")
    expected = {f"{name}.{array}" for name in spec.models for array in _ARRAYS} | {"format", "version"}
    if set(arrays) != expected:
        odd = sorted(set(arrays) ^ expected)[:3]
        raise _Unfit(f"its arrays do not fit the bundle's models ({', '.join(odd)} missing or extra)")
    statistics = {}
    for name in spec.models:
        model = manifest.model(name)
        channels = int(model.gradcam.feature_shape[0])  # the pooled features are the Grad-CAM layer's channels
        got = {array: arrays[f"{name}.{array}"] for array in _ARRAYS}
        shapes = {
            "offset": (),
            "mean": (channels,),
            "components": (spec.components, channels),
            "eigenvalues": (spec.components,),
            "residual_variance": (),
            "scale": (),
        }
        for array, shape in shapes.items():
            value = got[array]
            if value.shape != shape or value.dtype.kind != "f":
                raise _Unfit(f"{name}.{array} is {value.dtype} {value.shape}, the bundle's model needs float {shape}")
            if not np.isfinite(value).all():
                raise _Unfit(f"{name}.{array} holds non-finite values")
        for array in ("offset", "eigenvalues", "residual_variance", "scale"):
            if not (got[array] > 0).all():
                raise _Unfit(f"{name}.{array} must be positive")
        statistics[name] = ModelStatistics(
            offset=float(got["offset"]),
            mean=got["mean"].astype(np.float64),
            components=got["components"].astype(np.float64),
            eigenvalues=got["eigenvalues"].astype(np.float64),
            residual_variance=float(got["residual_variance"]),
            scale=float(got["scale"]),
        )
    return statistics


def load_domain(bundle: Bundle) -> DomainModel | None:
    """The bundle's domain model; None when its manifest has no domain record.

    The statistics file is checked against its sha256 like every bundle file; a file missing, changed, malformed
    or not fitting the bundle's models is a :class:`BundleError` in one line.
    """
    spec = bundle.manifest.domain
    if spec is None:
        return None
    path = bundle.file(spec.file)
    if not path.is_file():  # only where the bundle was opened without verification
        raise BundleError(f"bundle {bundle.path}: {spec.file} is missing; copy the whole bundle folder or re-export it")
    try:
        statistics = read_statistics(path, spec, bundle.manifest)
    except _Unfit as exc:
        raise BundleError(
            f"bundle {bundle.path}: the domain statistics {spec.file} are unusable: {exc}; fit them again "
            f"(olvf-export --fit-domain {bundle.path} --domain RADIOGRAPHS) or re-export the bundle"
        ) from None
    return DomainModel(spec, statistics)
