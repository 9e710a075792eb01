"""sovstack: a self-hostable sovereign AI stack."""

__version__ = "0.1.0"
__all__ = ["__version__"]
