"""Stage `oracle`: how large must k (top-k) and p (top-p) be to allow the human's next token?

Holtzman et al. 2019 (The Curious Case of Neural Text Degeneration) ask, for every token of
human text, where the true next token sits in the model's distribution. This stage answers
it for an experiment's model and data source, batched at forward-pass speed.

Entry points: run.run_oracle(cfg, settings, out) and command.register_command (`python -m
evalharness oracle FILE`). Modules by concern: plan (which tokens, in what batches), score (the
forward passes; the measurement itself is generation.ranks.rank_and_mass), stats (quantiles,
histograms, coverage curves), plots, run (check, load, score, write). The coverage rules and the
reading of an oracle folder are report.oracle_coverage (the report reads oracle folders too).

Which tokens are scored
  Documents come from the experiment's data source in a seeded order (random.Random(seed)
  shuffles the document indices, as `data.build_prompts` does). Each document is tokenized
  whole, without special tokens, into x_0 ... x_{n-1}. Tokens are scored in that order until
  `num_tokens` have been (the last document may be scored only in part; None = all).
  The end of a document is not a token: no end-of-text token is scored, no BOS is prepended.
  * window mode (L = context_tokens): x_i is scored for every i >= L, and the model sees
    exactly x_{i-L} ... x_{i-1}, at positions 0 ... L-1, in a forward pass of its own (no
    earlier text, no cache). x_0 ... x_{L-1} are context only; a document of at most L tokens
    contributes nothing. L must not exceed the model's maximum length M (L context tokens
    take L positions; the scored token is predicted from the last of them).
  * prefix mode: x_i is scored for 1 <= i <= M, and the model sees the whole preceding
    document x_0 ... x_{i-1}. x_0 is never scored (nothing precedes it). Tokens x_i with
    i > M are not scored, because their whole prefix does not fit in the model; they are
    counted in settings.tokens_beyond_max_length. context_tokens is not used in this mode.
  For the token x_i scored at position i, window and prefix mode see the same context
  exactly when i = L.

What is measured (V = the model's output vocabulary; z = its logits, cast to float32;
q = softmax(z) in float64, as the samplers' `probabilities` does)
  rank k     = 1 + #{v : z_v > z_true}. Tokens tied with the true token share the best rank.
               It is the smallest K for which top-k (which keeps every token whose logit is
               >= the K-th largest logit, ties with the K-th kept) allows the true token.
  p          = sum of q_v over {v : z_v >= z_true}: the mass of every token ranked at or
               above the true one, its whole tied block included. A rank-1 token without ties
               has p = its own probability (exactly: the other terms are zeros).
  mass_above = sum of q_v over {v : z_v > z_true}: the mass strictly above it.
  prob       = q_true.
  Ties and order are decided on the logits, compared exactly, never on rounded
  probabilities; distinct float32 logits give distinct float64 probabilities, so ordering by
  logit is ordering by probability.

Coverage curves (consistent with the harness's samplers, and tested against them)
  top-k with k = K allows the true token iff k <= K.
  top-p with p = P keeps the smallest prefix of the descending order whose mass reaches P,
  ties at the edge kept; so it allows the true token iff mass_above < P. p (the mass up to
  and including the token) is one such P: the token is allowed by every P in (mass_above, 1],
  and p is "the cumulative probability up to and including it" of the source experiment.
  Coverage at P is the fraction with mass_above < P, which is >= the fraction with p <= P.

Outputs (in <results>/<name>/oracle/ unless --output): oracle.json (statistics, histograms,
coverage, settings), oracle_tokens.jsonl (one record per scored token), oracle_*.png.
Quantiles use numpy's default (linear interpolation).
"""
