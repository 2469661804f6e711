"""Stage `builtin`: what runs offline out of the box — the builtin corpora, the bundled model and
its training.

Entry points:
  corpora.get_corpus(name) / corpora.builtin_documents(name, split)   `builtin:pydocs` text
  models/pydocs-gpt2-small/                the bundled GPT-2 (loaded by generation.models as
                                           `builtin:pydocs-gpt2-small`)
  train.run_training(TrainConfig)          `python -m evalharness train-builtin` (deterministic)
Modules: train_config (settings and options, without torch), command (the subcommand).
"""
