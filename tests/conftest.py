import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import build_tiny_model, synthetic_documents, write_jsonl  # noqa: E402


def pytest_terminal_summary(terminalreporter, config):
    """The order is random (pytest-randomly); `-q` hides its header, so say here, after any
    failure, how to run the same order again."""
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int) and not getattr(config.option, "randomly_dont_reorganize", False):
        terminalreporter.write_line(f"random order: rerun it with -p randomly --randomly-seed={seed}")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def corpus_jsonl(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "docs.jsonl", synthetic_documents(40, seed=2))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless chromium with one page (tests/chromium.py); skips where it cannot run."""
    from chromium import launch

    started = launch(tmp_path_factory)
    yield started
    started.close()


@pytest.fixture(scope="module")
def one_thread():
    """For tests made of thousands of tiny tensor operations: one torch thread. On a busy
    machine two threads contending for two cores made such tests 10-20x slower (measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
