"""cnicore: the Container Network Interface in Python.

This package is imported by every plugin exec, so it imports nothing: each
submodule (``skel``, ``types``, ``invoke``, ``ns``...) is loaded only by the
code that needs it.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
