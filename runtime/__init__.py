"""The lean runtime: imports no torch, torchvision or ultralytics.

Folders in data-flow order; a module imports its own stage and those before it (tests/test_layers.py):

1. ``bundle``   - the manifest, the bundle folder, signatures, tolerances
2. ``inputs``   - files to gray images on the display scale
3. ``steps``    - the cascade's numpy steps: detection, crops, preprocessing, Grad-CAM, intended use, decision
4. ``runners``  - backends behind one protocol, their selection, verified routes, CPU kinds
5. ``study``    - the started cascade, the study pipeline, ``Runtime``, results
6. ``checks``   - parity, route and engine checks against the reference

and the applications on top: ``writers`` (report, overlay, DICOM results), ``validation`` (olvf-validate),
``node`` (olvf-serve) and ``cli`` (olvf-infer).
"""
