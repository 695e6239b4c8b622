"""md2: Monodepth2 self-supervised monocular depth, rebuilt as one package and one command-line tool."""

__version__ = "0.1.0"

__all__ = ["__version__"]
