"""DICOM's grayscale pipeline (PS3.4 N.2), every decision recorded.

Stored values of frame 0, Modality LUT, VOI, scaling to [0, 1] and MONOCHROME1 inversion; see
:mod:`olvf.runtime.inputs.reader` for the whole route and its limits.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_windowing, get_decoder
from pydicom.uid import (
    UID,
)

from olvf.errors import InputError
from olvf.runtime.bundle.config import DisplayConversion
from olvf.runtime.inputs import codecs as dicom_codecs
from olvf.runtime.inputs.admission import pydicom_warnings, row_blocks
from olvf.runtime.inputs.dicom_header import (
    GRAY,
    DicomHeader,
    Geometry,
    ReadLimits,
    check_codestream,
    check_deflated,
    failure,
    image_geometry,
    one_line,
    optional_str,
    refuse_own_results,
    require_complete,
    require_pixel_data,
    transfer_syntax,
)
from olvf.runtime.inputs.images import BT601, Radiograph, RadiographInfo, finish_display, require_not_blank
from olvf.text import printable

dicom_codecs.register()


# --- DICOM ------------------------------------------------------------------


def _read_dicom(path: Path, conversion: DisplayConversion, min_side: int, limits: ReadLimits, *, preamble: bool):
    notes: list[str] = []
    try:
        with pydicom_warnings(notes):
            ds = _parse_dicom(path, preamble, limits)
            radiograph = _dicom_radiograph(ds, path, conversion, min_side, limits, preamble, notes)
        # pydicom's warnings join the notes when the block ends
        info = dataclasses.replace(radiograph.info, notes=tuple(printable(note) for note in notes))
        return Radiograph(radiograph.pixels, info)
    except (InputError, MemoryError):
        raise
    except RecursionError:
        raise InputError(
            f"{printable(path)}: the DICOM data set nests sequences too deeply to read; "
            "it is not a radiograph as a modality writes it, export the image again"
        ) from None
    except Exception as exc:  # noqa: BLE001 - whatever pydicom raises on a malformed file is the file's fault
        raise InputError(
            f"{printable(path)}: the DICOM data set is malformed ({failure(exc)}); export the image again"
        ) from None


def _dicom_radiograph(
    ds: Dataset,
    path: Path,
    conversion: DisplayConversion,
    min_side: int,
    limits: ReadLimits,
    preamble: bool,
    notes: list[str],
) -> Radiograph:
    header = DicomHeader(ds, path)
    refuse_own_results(header)
    require_pixel_data(header, preamble)
    ts = transfer_syntax(header, notes)
    geometry = image_geometry(header, min_side, limits)
    require_complete(header, ts, geometry)
    if ts.is_compressed:
        check_codestream(header, ts, geometry, notes)
    if geometry.frames > 1:
        notes.append(f"{geometry.frames} frames; used frame 0 (a radiograph is a single frame)")
    stored, decoded_as = _decode_first_frame(header, ts, geometry, notes)
    del ds.PixelData  # decoded: the encoded bytes (as large as the image) are not needed any more
    if decoded_as in GRAY:
        pixels, window, inverted = _gray_pipeline(stored, header, geometry, conversion, notes)
    else:
        gray = _to_gray(stored, decoded_as)
        require_not_blank(gray, path)
        top = float(2**geometry.bits_stored - 1)
        pixels, window, inverted = gray / top, _window_record("full range", centre=top / 2, width=top), False
    spacing, spacing_source, spacing_reason = _spacing(header, notes)
    if not preamble:
        notes.append("no DICOM preamble ('DICM'); parsed with force=True because it starts like a DICOM dataset")
    info = RadiographInfo(
        path=str(path),
        kind="dicom",
        sop_instance_uid=header.text("SOPInstanceUID"),
        modality=header.text("Modality"),
        rows=geometry.rows,
        columns=geometry.columns,
        bits_stored=geometry.bits_stored,
        photometric_interpretation=geometry.photometric,
        inverted=inverted,
        window=_printable_window(window),
        pixel_spacing_mm=spacing,
        spacing_source=spacing_source,
        spacing_reason=spacing_reason,
        frames=geometry.frames,
        frame_used=0,
        transfer_syntax=printable(ts.name),
        notes=tuple(printable(note) for note in notes),
        patient_orientation=_orientation(header, notes),
        sop_class_uid=header.text("SOPClassUID"),
        body_part_examined=header.text("BodyPartExamined"),
        view_position=header.text("ViewPosition"),
        image_type=_image_type(header),
    )
    return Radiograph(finish_display(pixels, path), info)


def _image_type(header: DicomHeader) -> tuple[str, ...] | None:
    """Image Type (0008,0008) as its values (ORIGINAL\\PRIMARY\\...), upper case; None where absent or empty."""
    value = header.get("ImageType")
    if value is None or value == "":
        return None
    values = [value] if isinstance(value, str) else list(value)
    words = tuple(printable(str(v).strip().upper()) for v in values)
    return words if any(words) else None


def _gray_pipeline(
    stored: np.ndarray,
    header: DicomHeader,
    geometry: Geometry,
    conversion: DisplayConversion,
    notes: list[str],
) -> tuple[np.ndarray, dict[str, Any], bool]:
    """Modality LUT, VOI, then MONOCHROME1 inversion; returns pixels in [0, 1], the window, inverted."""
    path = header.path
    require_not_blank(stored, path)
    looked_up = _by_table(stored, header, geometry, conversion, notes)
    if looked_up is not None:
        return looked_up
    return _gray_values(stored, header, geometry, conversion, notes)


# Largest range of stored values worth a table (16-bit images); a table larger than a quarter of the image is not.
_TABLE_MAX = 1 << 16
_PER_VALUE_VOI = ("VOI LUT Sequence", "Window Center/Width")


def _by_table(
    stored: np.ndarray,
    header: DicomHeader,
    geometry: Geometry,
    conversion: DisplayConversion,
    notes: list[str],
) -> tuple[np.ndarray, dict[str, Any], bool] | None:
    """The same conversion as :func:`_gray_values`, computed once per possible stored value and looked up.

    Rescale, windowing or a VOI LUT and the inversion act on each pixel's value alone, so for integer pixels
    they are a table over the values between the image's minimum and maximum: identical results, one
    gather instead of several float64 passes over millions of pixels (a 2500x2000 film read about 3x faster
    and with 150 MB less memory at its peak). None where the conversion depends on more than the value (the
    percentile window, a Modality LUT Sequence, which need not be monotonic) or a table would not pay; the
    per-pixel path then does the work and raises whatever it raises.
    """
    if stored.dtype.kind not in "iu" or conversion.window == "percentile" or header.get("ModalityLUTSequence"):
        return None
    low, high = int(stored.min()), int(stored.max())
    span = high - low + 1
    if span > _TABLE_MAX or 4 * span > stored.size:
        return None
    scratch: list[str] = []
    domain = np.arange(low, high + 1, dtype=stored.dtype)
    try:
        table, window, inverted = _gray_values(domain, header, geometry, conversion, scratch)
    except InputError:
        return None
    if window["source"] not in _PER_VALUE_VOI:
        return None  # fell back to percentiles of the values, which are the image's, not the table's
    table = np.clip(table, 0.0, 1.0).astype(np.float32)  # as finish_display does to every pixel
    index = stored if low == 0 and stored.dtype.kind == "u" else np.subtract(stored, low, dtype=np.int32)
    pixels = table[index]
    if pixels.min() == pixels.max():
        return None  # the table has contrast the image lacks: the per-pixel path judges it
    notes.extend(scratch)
    return pixels, window, inverted


def _gray_values(
    stored: np.ndarray,
    header: DicomHeader,
    geometry: Geometry,
    conversion: DisplayConversion,
    notes: list[str],
) -> tuple[np.ndarray, dict[str, Any], bool]:
    values = _modality(stored, header, notes)
    pixels, window = _voi(values, header, conversion, notes)
    inverted = False
    if geometry.photometric == "MONOCHROME1":
        inverted = conversion.invert_monochrome1
        if inverted:
            np.subtract(1.0, pixels, out=pixels)
        else:
            notes.append("MONOCHROME1 left as stored (bright = less dense), as the display conversion says")
    elif str(header.get("PresentationLUTShape", "")).upper() == "INVERSE":
        notes.append("Presentation LUT Shape INVERSE on MONOCHROME2 ignored; only MONOCHROME1 is inverted")
    return pixels, window, inverted


def _parse_dicom(path: Path, preamble: bool, limits: ReadLimits) -> Dataset:
    if preamble:
        check_deflated(path, limits)
    try:
        return pydicom.dcmread(path, force=not preamble)
    except RecursionError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged headers
        raise InputError(
            f"{printable(path)}: the DICOM header cannot be parsed ({failure(exc)}); "
            "the file is damaged, copy it again from PACS"
        ) from None


def _decode_first_frame(header: DicomHeader, ts: UID, geometry: Geometry, notes: list[str]) -> tuple[np.ndarray, str]:
    """Frame 0 as decoded by pydicom and the photometric interpretation of the result."""
    shown = printable(header.path)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise InputError(
            f"{shown}: pydicom cannot decode transfer syntax {printable(ts.name)} ({printable(ts)}); "
            "export the image uncompressed (Explicit VR Little Endian)"
        ) from None
    if not decoder.is_available:
        raise InputError(
            f"{shown}: {ts.name} pixel data needs a decoder that is not installed "
            f"({'; '.join(decoder.missing_dependencies)}); install one of them or export the image uncompressed"
        )
    chatter: list[str] = []
    try:
        with dicom_codecs.native_stderr(chatter):
            array, properties = decoder.as_array(header.ds, index=0)
    except RuntimeError as exc:  # every installed plugin failed
        missing = decoder.missing_dependencies
        advice = (
            f"a decoder that is not installed may read it ({'; '.join(missing)})"
            if missing
            else "the file may be damaged, export it again"
        )
        raise InputError(f"{shown}: {ts.name} pixel data cannot be decoded ({one_line(exc)}); {advice}") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - an inconsistent Image Pixel module, in whatever form
        raise InputError(f"{shown}: the pixel data cannot be read ({failure(exc)}); export the image again") from None
    finally:
        notes.extend(f"decoder: {line}" for line in chatter[:5])
    expected = (geometry.rows, geometry.columns) if geometry.samples == 1 else (geometry.rows, geometry.columns, 3)
    if array.shape != expected:
        raise InputError(
            f"{shown}: the pixel data decoded to shape {array.shape}, not the header's {expected}; "
            "export the image again"
        )
    return array, str(properties["photometric_interpretation"]).upper()


def _to_gray(array: np.ndarray, photometric: str) -> np.ndarray:
    if photometric != "RGB":
        return array[..., 0].astype(np.float32)  # YBR that pydicom left as YBR: Y is the luma already
    gray = np.empty(array.shape[:2], np.float32)
    for rows in row_blocks(array.shape):
        gray[rows] = array[rows].astype(np.float64) @ BT601
    return gray


def _modality(stored: np.ndarray, header: DicomHeader, notes: list[str]) -> np.ndarray:
    """Stored values to modality values; a malformed Modality LUT makes every later step meaningless."""
    ds, shown = header.ds, printable(header.path)
    sequence = header.get("ModalityLUTSequence")
    if sequence:
        try:
            problem = _lut_problem(sequence[0], ds, allowed_bits=(8, 16))
        except Exception as exc:  # noqa: BLE001 - a LUT stored as UN or with wrong VRs
            problem = failure(exc)
        if problem:
            raise InputError(f"{shown}: the Modality LUT Sequence is malformed ({problem}); export the image again")
    else:
        slope_raw, intercept_raw = header.get("RescaleSlope"), header.get("RescaleIntercept")
        if (slope_raw is None) != (intercept_raw is None):
            notes.append("only one of Rescale Slope / Rescale Intercept present; ignored, as the standard needs both")
            for keyword in ("RescaleSlope", "RescaleIntercept"):
                if keyword in ds:
                    del ds[keyword]
        elif slope_raw is not None:
            slope, intercept = _finite(slope_raw), _finite(intercept_raw)
            if slope is None or intercept is None or slope == 0:
                raise InputError(
                    f"{shown}: invalid Rescale Slope/Intercept ({printable(slope_raw)}, {printable(intercept_raw)}); "
                    "export the image again"
                )
    with np.errstate(over="ignore", invalid="ignore"):
        values = _rescaled(stored, header) if not sequence else apply_modality_lut(stored, ds)
        low, high = float(np.min(values)), float(np.max(values))
    if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(high - low)):
        raise InputError(
            f"{shown}: the Modality LUT (Rescale Slope {printable(header.get('RescaleSlope', '-'))}, Intercept "
            f"{printable(header.get('RescaleIntercept', '-'))}) makes pixel values that are not finite numbers; "
            "the header is damaged, export the image again"
        )
    rescaled = not sequence and header.get("RescaleSlope") is not None
    if rescaled and (high - low) < 0.5 * float(np.ptp(stored)) * abs(_finite(header.get("RescaleSlope")) or 1.0):
        raise InputError(
            f"{shown}: Rescale Slope {printable(header.get('RescaleSlope'))} and Intercept "
            f"{printable(header.get('RescaleIntercept'))} are too large for the pixel values (their differences are "
            "lost in rounding); the header is damaged, export the image again"
        )
    if low == high:
        raise InputError(
            f"{shown}: blank image after the Modality LUT (every pixel is {low:g}); "
            "check that the right image was exported"
        )
    return values


def _rescaled(stored: np.ndarray, header: DicomHeader) -> np.ndarray:
    """Rescale Slope/Intercept applied as pydicom's apply_modality_lut does, in float32 where that is exact enough.

    float32 holds every 16-bit value times a slope exactly to 7 digits; values beyond 2**24 get float64.
    """
    slope_raw, intercept_raw = header.get("RescaleSlope"), header.get("RescaleIntercept")
    slope = 1.0 if slope_raw is None else float(_finite(slope_raw) or 1.0)
    intercept = 0.0 if intercept_raw is None else float(_finite(intercept_raw) or 0.0)
    extreme = max(abs(float(stored.min())), abs(float(stored.max()))) * abs(slope) + abs(intercept)
    values: np.ndarray = stored.astype(np.float32 if extreme < 2**24 else np.float64)
    if slope != 1.0:
        values *= slope
    if intercept != 0.0:
        values += intercept
    return values


class _Malformed(Exception):
    """A VOI source of the file that cannot be used; the message says why."""


def _voi(
    values: np.ndarray, header: DicomHeader, conversion: DisplayConversion, notes: list[str]
) -> tuple[np.ndarray, dict]:
    """Modality values to [0, 1] by the file's VOI, else by percentiles, recording which and why."""
    if conversion.window == "percentile":
        return _percentile_window(values, conversion.fallback_percentiles, "requested")
    problems: list[str] = []
    for source, apply in (("VOI LUT Sequence", _voi_lut), ("Window Center/Width", _window)):
        try:
            result = apply(values, header.ds, notes)
        except _Malformed as exc:
            problems.append(f"{source}: {exc}")
            continue
        except (MemoryError, RecursionError):
            raise
        except Exception as exc:  # noqa: BLE001 - a VOI that cannot be read is malformed, never fatal
            problems.append(f"{source}: {failure(exc)}")
            continue
        if result is None:
            continue  # absent
        pixels, window = result
        if problems:
            notes.append(f"used {source} because {'; '.join(problems)}")
        return pixels, window
    reason = f"malformed: {'; '.join(problems)}" if problems else "absent"
    return _percentile_window(values, conversion.fallback_percentiles, reason)


def _voi_lut(values: np.ndarray, ds: Dataset, notes: list[str]) -> tuple[np.ndarray, dict] | None:
    sequence = ds.get("VOILUTSequence")
    if not sequence:
        return None
    item = sequence[0]
    problem = _lut_problem(item, ds, allowed_bits=(8, *range(10, 17)))
    if problem:
        raise _Malformed(problem)
    entries, first, bits = _descriptor(item)
    if first >= 2**15 and values.min() < 0:
        # The first value mapped is SS for signed input, but some writers store it as
        # US: 63488 means -2048. Read as US, every signed value would map to entry 0.
        first -= 2**16
        notes.append(f"VOI LUT first mapped value read as signed ({first})")
    lut = _lut_data(item, ds, bits)
    low, high = float(lut.min()), float(lut.max())
    scaled = (lut.astype(np.float64) - low) / (high - low)
    pixels = np.empty(values.shape, np.float32)
    for rows in row_blocks(values.shape):
        index = np.clip(np.rint(values[rows]).astype(np.int64) - first, 0, entries - 1)  # LUTs map integers
        pixels[rows] = scaled[index]
    if high > 2**bits - 1 or high < 2 ** (bits - 1):
        notes.append(
            f"VOI LUT values span {low:g}..{high:g} although its descriptor declares {bits} bits; scaled by the values"
        )
    _require_contrast(pixels, "the LUT maps every pixel to one value")
    explanation = item.get("LUTExplanation")
    window = _window_record(
        "VOI LUT Sequence",
        alternatives=len(sequence),
        explanation=optional_str(explanation),
        lut={"entries": entries, "first_mapped": first, "bits": bits, "range": [low, high]},
    )
    return pixels, window


def _window(values: np.ndarray, ds: Dataset, notes: list[str]) -> tuple[np.ndarray, dict] | None:
    has_centre, has_width = ds.get("WindowCenter") not in (None, ""), ds.get("WindowWidth") not in (None, "")
    if not has_centre and not has_width:
        return None
    if not has_centre or not has_width:
        raise _Malformed("only one of Window Center / Window Width present")
    centres, widths = _numbers(ds["WindowCenter"].value), _numbers(ds["WindowWidth"].value)
    if centres is None or widths is None:
        raise _Malformed(
            f"non-numeric values ({printable(ds['WindowCenter'].value)} / {printable(ds['WindowWidth'].value)})"
        )
    function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
    try:
        # The output range depends on bits, sign and rescale (PS3.3 C.11.2.1.2);
        # windowing the extremes asks pydicom for the range it used.
        black, white = apply_windowing(np.array([-np.inf, np.inf]), ds, index=0)
        if black == white:
            raise _Malformed("its output range is empty")
        pixels = np.empty(values.shape, np.float32)
        for rows in row_blocks(values.shape):
            windowed = apply_windowing(values[rows].astype(np.float64), ds, index=0)
            pixels[rows] = np.clip((windowed - black) / (white - black), 0.0, 1.0)
    except ValueError as exc:  # width out of range for the function, unknown function
        raise _Malformed(one_line(exc)) from None
    centre, width = centres[0], widths[0]
    _require_contrast(pixels, f"centre {centre:g}, width {width:g} maps every pixel to one value")
    explanations = ds.get("WindowCenterWidthExplanation")
    if isinstance(explanations, str) or explanations is None:
        explanation = optional_str(explanations)
    else:
        explanation = optional_str(explanations[0]) if len(explanations) else None
    alternatives = max(len(centres), len(widths))
    if alternatives > 1:
        notes.append(f"the file offers {alternatives} windows; used the first (centre {centre:g}, width {width:g})")
    window = _window_record(
        "Window Center/Width",
        centre=centre,
        width=width,
        function=function,
        alternatives=alternatives,
        explanation=explanation,
    )
    return pixels, window


def _percentile_window(values: np.ndarray, percentiles: tuple[float, float], reason: str) -> tuple[np.ndarray, dict]:
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if not high > low:  # most pixels share one value; stretch the whole range instead
        low, high = float(values.min()), float(values.max())
        reason += "; percentiles coincide, used min/max"
    pixels = np.empty(values.shape, np.float32)
    for rows in row_blocks(values.shape):
        pixels[rows] = np.clip((values[rows].astype(np.float64) - low) / (high - low), 0.0, 1.0)
    window = _window_record(
        "percentile fallback",
        centre=(low + high) / 2,
        width=high - low,
        reason=reason,
        percentiles=[float(p) for p in percentiles],
    )
    return pixels, window


def _window_record(source: str, **details: Any) -> dict[str, Any]:
    """One key set for every source, so reports can rely on it."""
    record: dict[str, Any] = {
        "source": source,
        "centre": None,
        "width": None,
        "function": None,
        "alternatives": 1,
        "explanation": None,
        "reason": None,
        "percentiles": None,
        "lut": None,
    }
    unknown = set(details) - set(record)
    if unknown:
        raise TypeError(f"unknown window details {sorted(unknown)}")
    record.update(details)
    return record


def _require_contrast(pixels: np.ndarray, problem: str) -> None:
    if pixels.min() == pixels.max():
        raise _Malformed(problem)


def _descriptor(item: Dataset) -> tuple[int, int, int]:
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    return entries or 2**16, first, bits  # 0 entries means 65536 (PS3.3 C.11.1.1)


def _lut_problem(item: Dataset, ds: Dataset, allowed_bits: tuple[int, ...]) -> str | None:
    """Why a LUT cannot be used as declared, or None."""
    descriptor, data = item.get("LUTDescriptor"), item.get("LUTData")
    if descriptor is None or data is None:
        return "LUT Descriptor or LUT Data missing"
    try:
        entries, _, bits = _descriptor(item)
    except (TypeError, ValueError):
        return f"LUT Descriptor {descriptor!s} is not three numbers"
    if bits not in allowed_bits:
        return f"{bits} bits per entry"
    lut = _lut_data(item, ds, bits)
    if lut.size != entries:
        return f"descriptor declares {entries} entries, LUT Data has {lut.size}"
    if lut.min() == lut.max():
        return "every entry is the same"
    if allowed_bits == (8, 16) and lut.max() > 2**bits - 1:  # pydicom stores modality LUTs in uint{bits}
        return f"values up to {int(lut.max())} do not fit the declared {bits} bits"
    return None


def _lut_data(item: Dataset, ds: Dataset, bits: int) -> np.ndarray:
    data = item.LUTData
    if isinstance(data, bytes | bytearray):  # OW: 16-bit words in the dataset's byte order
        little = ds.original_encoding[1] is not False
        if bits == 8 and len(data) == int(item.LUTDescriptor[0] or 2**16):
            return np.frombuffer(data, dtype=np.uint8).astype(np.int64)
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<u2" if little else ">u2").astype(np.int64)
    if isinstance(data, int):
        return np.array([data], dtype=np.int64)
    return np.asarray(list(data), dtype=np.int64)


def _spacing(header: DicomHeader, notes: list[str]) -> tuple[tuple[float, float] | None, str | None, str | None]:
    """PixelSpacing (in the patient, calibrated) before ImagerPixelSpacing (at the detector).

    A zero spacing is what some modalities write for "not known": it counts as absent, not as malformed.
    """
    malformed: list[str] = []
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            raw = header.get(keyword)
        except InputError:
            malformed.append(keyword)
            continue
        if raw is None or raw == "":
            continue
        values = _numbers(raw)
        if values is not None and len(values) == 2 and all(v == 0 for v in values):
            notes.append(f"{keyword} is 0\\0 (unknown); treated as absent")
            continue
        if values is not None and len(values) == 2 and min(values) > 0:
            if malformed:
                notes.append(f"{' and '.join(malformed)} malformed; used {keyword}")
            return (values[0], values[1]), keyword, None
        malformed.append(keyword)
    return None, None, f"malformed {' and '.join(malformed)}" if malformed else "missing"


def _orientation(header: DicomHeader, notes: list[str]) -> tuple[str, str] | None:
    """Patient Orientation (0020,0020): the patient directions of the image's rows and columns, if usable."""
    try:
        raw = header.get("PatientOrientation")
    except InputError:
        notes.append("Patient Orientation (0020,0020) cannot be read; ignored")
        return None
    if raw is None or raw == "":
        return None
    values = [raw] if isinstance(raw, str) else list(raw)
    directions = [printable(str(v)).strip().upper() for v in values]
    if len(directions) != 2 or not all(d and set(d) <= set("APRLHF") for d in directions):
        notes.append(f"Patient Orientation {printable(raw)!s} is not two directions of A, P, R, L, H, F; ignored")
        return None
    return directions[0], directions[1]


def _printable_window(window: dict[str, Any]) -> dict[str, Any]:
    """The window record with its text escaped and its numbers finite (reports are strict JSON)."""
    clean = dict(window)
    for key in ("explanation", "reason", "function"):
        if isinstance(clean.get(key), str):
            clean[key] = printable(clean[key])
    for key in ("centre", "width"):
        value = clean.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            clean[key] = None
    return clean


def _numbers(value: Any) -> list[float] | None:
    """A DICOM DS/IS value (one or many) as finite floats, or None if any is not a number."""
    items = [value] if isinstance(value, str | int | float) else list(value or [])
    numbers = [_finite(v) for v in items]
    if not numbers or any(n is None for n in numbers):
        return None
    return [float(n) for n in numbers if n is not None]


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
