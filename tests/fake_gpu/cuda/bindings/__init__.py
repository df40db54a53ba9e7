"""Test double of ``cuda.bindings``: only ``cuda.bindings.runtime`` exists. Never use it in production."""

__version__ = "0.0.0+fake"
