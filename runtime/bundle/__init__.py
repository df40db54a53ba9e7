"""Stage 1, the bundle: what a model bundle is and how it is trusted.

The manifest and the settings it carries (``manifest``, ``config``), the folder and its file hashes (``files``),
signatures (``signing``), olvf's own updates to a bundle (``updates``), ONNX external data (``external_data``),
the tolerances that gate parity and faster routes (``tolerances``) and the domain statistics (``domain``).
Reads no image and starts no backend.
"""
