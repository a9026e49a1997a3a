"""kernelmon: a desktop monitor and manager for Jupyter kernels."""

__version__ = "0.1.0"
