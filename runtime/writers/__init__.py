"""Writers: study results into files people and systems read (report, overlay, heatmaps, DICOM).

Each writer takes :mod:`olvf.runtime.results` objects and recomputes nothing;
none imports a command-line module.
"""
