"""Stage 2, the inputs: files as a hospital has them, read into gray images on the display scale.

Discovery of the files to run (``discovery``), file admission (``admission``), the image types (``images``),
DICOM headers and limits (``dicom_header``), DICOM's grayscale pipeline (``dicom_gray``), PNG / JPEG / TIFF
(``raster``, ``image_headers``), codecs (``codecs``), and ``reader.read_radiograph`` over them all.
"""
