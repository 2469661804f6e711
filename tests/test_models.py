"""Model loading: builtin names, local folders, safetensors-only by default, remote code off."""

import json
import shutil

import pytest

from evalharness.errors import UserError
from evalharness.generation.models import load_model


def test_local_folder_loads_in_eval_mode_with_ids(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir), "cpu")
    assert not loaded.model.training
    assert loaded.eos_id == loaded.tokenizer.eos_token_id and loaded.pad_id == loaded.eos_id
    assert loaded.max_positions == 128


def test_unknown_builtin_and_missing_paths_are_user_errors():
    with pytest.raises(UserError, match="unknown builtin model 'builtin:nope'"):
        load_model("builtin:nope", "cpu")
    with pytest.raises(UserError, match="no model directory at './not/here'"):
        load_model("./not/here", "cpu")


def test_pickled_weights_are_refused_unless_allowed(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").unlink()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(UserError, match="use_safetensors: false"):
        load_model(str(folder), "cpu")
    assert load_model(str(folder), "cpu", use_safetensors=False).model is not None


def test_remote_code_is_not_run_unless_trusted(tiny_model_dir, tmp_path):
    folder = tmp_path / "remote"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "evil.py").write_text("raise SystemExit('remote code ran')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    loaded = load_model(str(folder), "cpu")  # evil.py would raise SystemExit if it were imported
    assert type(loaded.model).__name__ == "GPT2LMHeadModel"


def test_cuda_asked_without_cuda_is_a_user_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError, match="model.device: 'cuda' asked for, but no CUDA device"):
        load_model("./not/here", "cuda")
