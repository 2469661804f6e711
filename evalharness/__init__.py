"""evalharness: compare decoding methods by how human-like the generated text is.

The stages and where each capability starts: README, section Architecture.

Entry points, the Python API (README, section "Python API"): evalharness.run, load_config,
read_summary, the plugin registries SAMPLERS and SCORERS, and UserError. They live in
evalharness.api and are loaded on first use (module __getattr__), so that `import evalharness`
(and the light commands: --help, annotate export) start without torch."""

import logging

from evalharness.errors import UserError

__version__ = "0.1.0"

__all__ = ["run", "load_config", "read_summary", "SAMPLERS", "SCORERS", "UserError", "__version__"]

_API = ("run", "load_config", "read_summary", "SAMPLERS", "SCORERS", "ExperimentConfig")

# A library stays quiet unless its user configures logging; the CLI sends these records to stderr.
logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    """The API's names, imported on first use: evalharness.api brings in torch and transformers."""
    if name in _API:
        from evalharness import api

        return getattr(api, name)
    raise AttributeError(f"module 'evalharness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
