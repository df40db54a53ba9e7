"""Test double of cuda-python's ``cuda`` package: see ``tests/fake_gpu/tensorrt/__init__.py``.

A regular package (this file exists), so a ``sys.path`` / ``PYTHONPATH`` entry for
``tests/fake_gpu`` shadows the real cuda-python, which is a namespace package.
"""
