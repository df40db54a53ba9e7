"""A stand-in for the original ultralytics/yolov5 repository's ``models`` package, for tests only.

Checkpoints of that repository are pickles of ``models.yolo.Model`` and
``models.common.*`` modules. The tests need such files without the
repository (AGPL, and not installed), so this package defines classes with
the same module paths, class names and attribute names, written for olvf's
tests from the published architecture, and saves them with ``torch.save``.

Their ``forward`` methods are a second, independent implementation (mostly
``torch.nn.functional`` on the raw parameters: BatchNorm by hand, Focus by
``pixel_unshuffle``, attention by hand, decoding in the release 5 style)
against which olvf's rebuild is compared. olvf never imports this package:
its reader must rebuild the model from the pickle alone.
"""
