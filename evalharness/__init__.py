"""evalharness: compare decoding methods by how human-like the generated text is."""

__version__ = "0.1.0"
