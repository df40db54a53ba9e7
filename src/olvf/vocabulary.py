"""The words olvf's results are made of, defined once: classes, vertebral levels, Grad-CAM regions, label columns.

Everything that names a class, a level or a region (the manifest, the pipeline, the writers, the validation, the
phantoms) takes it from here, so a report, an overlay, a DICOM object and a labelled set cannot spell them apart.
"""

from __future__ import annotations

#: The study's classes, in the order of the ensemble's outputs.
CLASSES: tuple[str, ...] = ("normal", "old", "fresh")
#: The classes that are fractures.
FRACTURE_CLASSES: tuple[str, ...] = ("old", "fresh")
#: The levels the study classified: T12 to L5.
LEVELS: tuple[str, ...] = ("T12", "L1", "L2", "L3", "L4", "L5")
#: Level names a detector may give (T11 and S1 bound the lumbar column on a film).
DETECTOR_LEVELS: tuple[str, ...] = ("T11", *LEVELS, "S1")
#: The column a lateral lumbar film shows, top to bottom, as far as the intended-use check reads it.
COLUMN: tuple[str, ...] = ("T10", *DETECTOR_LEVELS)
#: Where in and around a vertebral body a Grad-CAM map's mass lies.
REGIONS: tuple[str, ...] = ("centre", "upper_endplate", "lower_endplate", "anterior", "posterior", "outside_box")

#: A labelled set's CSV (olvf.runtime.validation.labels): its name, required columns and optional box columns.
LABELS_NAME = "labels.csv"
REQUIRED_COLUMNS: tuple[str, ...] = ("file", "level", "class")
BOX_COLUMNS: tuple[str, ...] = ("x1", "y1", "x2", "y2")

#: What every output of a demo bundle says, first: its banner, and the mark on each verdict line.
DEMO_WARNING = "DEMO bundle: trained on synthetic phantoms only, not for diagnosis"
DEMO_MARK = "DEMO, not for diagnosis"
