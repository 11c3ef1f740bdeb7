"""``swap_two_types``: the training-time site-exchange augmentation (``model.type_swap_prob``)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dpcdvae.models.dpcdvae import swap_two_types


def _batch(sizes, n_elements, seed):
    g = torch.Generator().manual_seed(seed)
    atom_batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    true = torch.randint(1, n_elements + 1, (int(sum(sizes)),), generator=g)
    return true, atom_batch


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 12), min_size=1, max_size=8), n_el=st.integers(1, 4),
       seed=st.integers(0, 10_000))
def test_swap_always_exchanges_two_atoms_of_different_elements(sizes, n_el, seed):
    true, atom_batch = _batch(sizes, n_el, seed)
    out = swap_two_types(true, true, atom_batch, len(sizes), 1.0, torch.Generator().manual_seed(seed))
    for c in range(len(sizes)):
        m = atom_batch == c
        # the composition of every crystal is preserved
        assert sorted(out[m].tolist()) == sorted(true[m].tolist())
        changed = int((out[m] != true[m]).sum())
        if len(set(true[m].tolist())) > 1:
            assert changed == 2  # prob 1: every crystal with two elements gets exactly one exchange
        else:
            assert changed == 0  # one element (or no atom): nothing to exchange


def test_prob_zero_is_identity_and_input_untouched():
    true, atom_batch = _batch([5, 5, 3], 3, 0)
    noised = true.clone()
    noised[0] = 99
    before = noised.clone()
    out = swap_two_types(noised, true, atom_batch, 3, 0.0)
    assert torch.equal(out, noised)
    out = swap_two_types(noised, true, atom_batch, 3, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(noised, before)  # the argument is not modified in place


def test_swaps_the_given_types_not_the_true_ones():
    # the exchanged values come from `types` (the perturbed Z_t); pairs are chosen by the true elements
    true = torch.tensor([1, 1, 2])
    types = torch.tensor([7, 8, 9])
    out = swap_two_types(types, true, torch.zeros(3, dtype=torch.long), 1, 1.0, torch.Generator().manual_seed(0))
    assert sorted(out.tolist()) == [7, 8, 9]
    assert out[2] != 9 and (out[:2] == 9).sum() == 1


def test_share_of_swapped_crystals_follows_prob():
    sizes = [5] * 4000
    atom_batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    true = torch.tensor([1, 2, 3, 3, 3] * len(sizes))
    out = swap_two_types(true, true, atom_batch, len(sizes), 0.3, torch.Generator().manual_seed(0))
    swapped = torch.zeros(len(sizes)).index_add_(0, atom_batch, (out != true).float()) > 0
    share = swapped.float().mean().item()
    assert abs(share - 0.3) < 0.03  # binomial sd at n=4000 is 0.007


def test_bad_probability_is_refused():
    true, atom_batch = _batch([3], 2, 0)
    with pytest.raises(ValueError, match="type_swap_prob"):
        swap_two_types(true, true, atom_batch, 1, 1.5)
