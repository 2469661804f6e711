"""Stage `experiment`: from an experiment YAML to a scored results folder.

Entry points:
  config.load(path)                   the YAML, validated, as frozen dataclasses (ExperimentConfig)
  pipeline.run_experiment(cfg, opts)  prompts -> generations (every run + the human row) -> scores
                                      -> summary and report, resumable; `python -m evalharness run`
Modules: data (documents -> Prompts), scoring (the scorers over every run, cached; featurisation
shared among torchrun ranks), parallel (torchrun ranks, one results folder), provenance (git
commit, versions, machine), torchrun (was this process started by torchrun? without torch),
faults (the crash tests' kill switch, an environment variable).
The results folder's format is `evalharness.store`, below every stage, since the report and the
annotation app read it too.
"""
