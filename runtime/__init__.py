"""The lean runtime: bundle, manifest, preprocessing, runners, Grad-CAM. Imports no torch."""
