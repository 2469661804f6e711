"""Repetition rules against literal transcriptions of Holtzman et al.'s code and caption."""

import numpy as np
import pytest

from evalharness.errors import UserError
from evalharness.scorers.repetition import Repetition, is_repeating_caption_rule, is_repeating_code_rule
from scorer_helpers import check_intervals, ctx, gen, gens

SEP = 0  # the end-of-text id of the helper records


def paper_code_rule(tokens, max_n=90):
    """Transcribed line by line from metrics/repetition.py (ari-holtzman/degen)."""
    gen = list(tokens)
    if gen[-1] == SEP:
        gen.pop(-1)
    rev_gen = list(reversed(gen))
    last_n_repeats = [0] * max_n
    for n in range(1, max_n + 1):
        n_repeat = 1
        while len(rev_gen[n*n_repeat:n*(n_repeat+1)]) == n and \
                rev_gen[n*n_repeat:n*(n_repeat+1)] == rev_gen[:n]:
            n_repeat += 1
        last_n_repeats[n - 1] = n_repeat
    max_repeated_n = max(range(max_n), key=lambda x: last_n_repeats[x])
    return last_n_repeats[max_repeated_n] > 1 and (max_repeated_n+1 >= 3 or last_n_repeats[max_repeated_n] > 50)


def caption_rule(tokens):
    """'a phrase (minimum length 2) repeated at least three times at the end', written directly."""
    for length in range(2, len(tokens) // 3 + 1):
        a, b, c = tokens[-length:], tokens[-2 * length:-length], tokens[-3 * length:-2 * length]
        if a == b == c:
            return True
    return False


def test_five_times_a_b_c_is_flagged_by_both_rules():
    text = [9, 8, 7, 6] + [1, 2, 3] * 5
    assert is_repeating_code_rule(text) and is_repeating_caption_rule(text)
    assert paper_code_rule(text + [SEP]) and caption_rule(text)
    result = Repetition().score([gen(text, eos=True), gen([4, 5, 6, 7])], ctx())
    assert result.values == {"repetition": 0.5, "repetition_paper": 0.5}
    assert result.per_sample["repetition"] == (1.0, 0.0)


@pytest.mark.parametrize("text, code, caption", [
    ([5] * 10, False, True),          # one token 10x: n = 1 wins with 10 repeats, but 10 <= 50
    ([5] * 51, True, True),           # ... > 50 repeats: flagged by the code rule
    ([1, 2] * 10, False, True),       # a 2-gram loop: n = 2 wins, < 3 and <= 50
    ([1, 2, 3] * 2, True, False),     # a 3-gram twice: code yes, caption needs three times
    ([2, 1, 1, 2, 1, 1], False, False),  # tie: n = 1 and n = 3 both repeat twice -> n = 1 wins
    ([], False, False),
    ([7], False, False),
])
def test_hand_made_cases(text, code, caption):
    assert is_repeating_code_rule(text) is code
    assert is_repeating_caption_rule(text) is caption
    if text:
        assert paper_code_rule(text) is code
    assert caption_rule(text) is caption


def test_agrees_with_literal_transcriptions_on_random_texts():
    rng = np.random.default_rng(0)
    for _ in range(400):
        body = [int(x) for x in rng.integers(1, 4, size=rng.integers(1, 15))]
        loop = [int(x) for x in rng.integers(1, 4, size=rng.integers(1, 5))]
        text = body + loop * int(rng.integers(0, 6))
        assert is_repeating_code_rule(text) == paper_code_rule(text + [SEP]), text
        assert is_repeating_code_rule(text, max_n=3) == paper_code_rule(text + [SEP], max_n=3), text
        assert is_repeating_caption_rule(text) == caption_rule(text), text


def test_intervals_and_validation():
    rng = np.random.default_rng(1)
    texts = [[int(x) for x in rng.integers(1, 50, size=20)] + [1, 2, 3] * int(i % 3 == 0) * 4 for i in range(60)]
    check_intervals(Repetition(), gens(texts))
    with pytest.raises(UserError, match="^max_n: "):
        Repetition(max_n=0)
