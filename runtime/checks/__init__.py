"""Stage 6, the checks: a bundle compared with its reference on this machine.

Parity of the exported graphs (``verify``), the gate for faster routes on this kind of CPU (``routes``), and
TensorRT engines built and checked here (``engines``).
"""
