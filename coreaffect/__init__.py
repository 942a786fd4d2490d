"""coreaffect: valence and arousal from facial video."""

__version__ = "0.1.0"
