"""Phantom lateral lumbar radiographs with exact ground truth, made by code.

No patient radiograph may ship with olvf, yet CI, the end-to-end tests, a new
user and the detector's training all need a radiograph with vertebrae in it.
``make_phantom`` draws one from a seed; ``write_dicom`` and ``write_truth``
save it as a DICOM file and its truth as JSON; ``olvf.phantom.sets`` writes a
labelled set of them (``olvf-phantom --set``).

Modules, in the order a phantom is made: ``anatomy`` (what is drawn: levels,
body sizes, fractures, the scene), ``bodies`` (one vertebra as a patch),
``drawing`` (the film: chain, surroundings, display; ``make_phantom``),
``output`` (DICOM and truth files), ``sets`` (labelled sets), ``cli``.

Conventions
    * Lateral view, **patient facing left**: anterior (the front of the
      vertebral bodies, the abdomen) is on the image's left, posterior (the
      spinous processes, the back) on its right, head at the top. DICOM
      Patient Orientation is therefore ``P\\F``. This is how a left-lateral
      (``LL``) radiograph is conventionally displayed.
    * Pixels are 12-bit (0..4095) in the MONOCHROME2 sense: bone bright, air
      dark.
    * Boxes are ``(x1, y1, x2, y2)`` in pixels, ``x1, y1`` the first column and
      row inside the vertebral body and ``x2, y2`` one past the last
      (so ``x2 - x1`` is the width); they are the tight axis-aligned box of
      the body only, posterior elements excluded.

Anatomy
    Vertebral bodies T8 to L5 and the sacrum (S1 and below) sit on a chain
    that follows lumbar lordosis (bulging anteriorly, apex near L3-L4) above a
    sacral slope of about 30-45 degrees, with thoracic kyphosis above. Each body
    is a rounded, slightly trapezoidal outline with concave endplates, a
    bright cortical rim (endplates brighter than walls), vertically anisotropic
    band-limited trabecular texture, wedge-shaped discs between bodies,
    fainter posterior elements (pedicle, articular pillar, spinous process),
    and for T9-T12 ribs. Around them: a soft-tissue envelope with air outside,
    lung bases behind the diaphragm, bowel gas, iliac wings over L4-S1,
    sometimes aortic calcification, a smooth large-scale gradient, detector
    blur, the edge enhancement of a processed radiograph and quantum noise
    that grows with attenuation. A seed varies body sizes, lordosis, sacral
    slope, position, rotation (up to about 4 degrees), bone density,
    contrast, brightness and noise.

    Only T12 and L1-L5 are *levels* (classified, in ``Phantom.levels``).
    T8-T11 and S1 are drawn because real films show them (the spine does not
    stop at T12); the ones wholly inside the image are listed in
    ``Phantom.context`` (class "normal", never fractured) so a detector's
    training set can decide whether to label them.

Fractures (Genant semi-quantitative deformities, height loss 25-40 %)
    * wedge: anterior height reduced (superior endplate collapses anteriorly);
    * biconcave: middle height reduced (both endplates cave in centrally);
    * crush: the whole body loses height.
    The spine above and below follows the collapsed body (wedges add local
    kyphosis, crushes shorten the column).

    Old and fresh differ as they do on film:
    * old (healed): sclerotic, thick, bright, well-defined endplate at the
      collapse, a denser smooth band beneath it, smoother trabeculae and an
      anterior osteophyte at the collapsed corner (normal bodies get
      degenerative spurs too, at random, so a spur alone proves nothing);
    * fresh: a bright irregular band of trabecular condensation with a thin
      impaction line a few millimetres under the collapsed endplate, a
      blurred and interrupted cortical outline there, and a small step in the
      anterior cortex.

Everything is vectorised numpy/OpenCV: a 2500x2000 phantom takes about a
second. The same seed and arguments give identical pixels; random streams
are split by purpose, so adding a fracture to one level leaves the rest of the
picture as it was (except where the spine moves because the body collapsed).
"""

from __future__ import annotations

from olvf.phantom.anatomy import (
    ANTERIOR,
    DEFORMITIES,
    DX_FOR_PRESENTATION,
    MAX_VALUE,
    PATIENT_ORIENTATION,
    SIZE_LIMITS,
    Phantom,
    Vertebra,
    phantom_labels,
)
from olvf.phantom.drawing import make_phantom
from olvf.phantom.output import dicom_dataset, phantom_display, truth_dict, write_dicom, write_truth
from olvf.vocabulary import CLASSES, FRACTURE_CLASSES, LEVELS

__all__ = [
    "ANTERIOR",
    "CLASSES",
    "DEFORMITIES",
    "DX_FOR_PRESENTATION",
    "FRACTURE_CLASSES",
    "LEVELS",
    "MAX_VALUE",
    "PATIENT_ORIENTATION",
    "SIZE_LIMITS",
    "Phantom",
    "Vertebra",
    "dicom_dataset",
    "make_phantom",
    "phantom_display",
    "phantom_labels",
    "truth_dict",
    "write_dicom",
    "write_truth",
]
