"""Stage `generation`: a causal LM turned into continuations and log-probabilities.

Entry points:
  models.load_model(name, device, ...)     a Hugging Face id, local folder or builtin:<name>, with
                                           its tokenizer, device placement and weights fingerprint
  decoding.decode(loaded, sampler, ...)    every sampler's continuations of a batch of prompts
  human_logprobs.sampler_logprobs_of_human the human continuations under each run's sampling
                                           distribution (teacher-forced)
  ranks.rank_and_mass(logits, targets)     where a token sits in a distribution (oracle, GLTR)
Modules: fast_decoding (static KV cache / CUDA graphs), cache_rows (beam and contrastive search
choose KV-cache rows lazily), allocator (glibc keeps freed memory for big CPU tensors).
"""
