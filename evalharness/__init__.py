"""evalharness: compare decoding methods by how human-like the generated text is.

The stages and where each capability starts: README, section Architecture."""

import logging

__version__ = "0.1.0"

# A library stays quiet unless its user configures logging; the CLI sends these records to stderr.
logging.getLogger(__name__).addHandler(logging.NullHandler())
