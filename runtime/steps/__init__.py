"""Stage 3, the cascade's steps: numpy in, numpy out, no I/O and no backend.

Detection post-processing and letterboxing (``detection``), crops (``crops``), crop preprocessing
(``preprocess``), Grad-CAM (``gradcam``) and its regions (``regions``), the intended-use checks
(``applicability``) and the MRI decision (``decision``).
"""
