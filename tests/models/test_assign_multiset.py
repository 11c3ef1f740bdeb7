"""``assign_multiset``: CSP's composition-preserving re-assignment of the requested types by the type head."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dpcdvae.models.dpcdvae import assign_multiset, padded_layout


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=6), n_el=st.integers(1, 4),
       seed=st.integers(0, 10_000))
def test_composition_of_every_crystal_is_kept(sizes, n_el, seed):
    g = torch.Generator().manual_seed(seed)
    atom_batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    types = torch.randint(1, n_el + 1, (int(sum(sizes)),), generator=g) * 7  # Z in 7, 14, 21, 28
    logits = torch.randn(types.numel(), 100, generator=g) * 3
    out = assign_multiset(logits, types, atom_batch, len(sizes))
    for c in range(len(sizes)):
        m = atom_batch == c
        assert sorted(out[m].tolist()) == sorted(types[m].tolist())


def test_follows_a_confident_head_to_the_right_permutation():
    # two crystals: SrTiO3 with Sr and Ti exchanged, NaCl (2 atoms) with both exchanged; the head knows the truth
    true = torch.tensor([38, 22, 8, 8, 8, 11, 17])
    start = torch.tensor([22, 38, 8, 8, 8, 17, 11])
    atom_batch = torch.tensor([0, 0, 0, 0, 0, 1, 1])
    logits = torch.full((7, 100), -5.0)
    logits[torch.arange(7), true - 1] = 5.0
    assert torch.equal(assign_multiset(logits, start, atom_batch, 2), true)


def test_head_cannot_add_an_element_that_was_not_requested():
    # the head wants Ti everywhere; only one Ti was requested, so it goes to the atom the head is surest about
    types = torch.tensor([38, 22, 8])
    logits = torch.zeros(3, 100)
    logits[:, 21] = torch.tensor([1.0, 4.0, 2.0])
    out = assign_multiset(logits, types, torch.zeros(3, dtype=torch.long), 1)
    assert out[1] == 22 and sorted(out.tolist()) == [8, 22, 38]


def test_one_element_and_empty_input():
    types = torch.tensor([6, 6, 6])
    assert torch.equal(assign_multiset(torch.randn(3, 100), types, torch.zeros(3, dtype=torch.long), 1), types)
    empty = torch.zeros(0, dtype=torch.long)
    assert assign_multiset(torch.zeros(0, 100), empty, empty, 0).numel() == 0


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 9), min_size=1, max_size=5), seed=st.integers(0, 10_000))
def test_padded_layout_and_a_layout_built_once_give_the_same_assignment(sizes, seed):
    g = torch.Generator().manual_seed(seed)
    atom_batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    idx, valid = padded_layout(atom_batch, len(sizes))
    assert idx.shape == valid.shape == (len(sizes), max(sizes))
    assert valid.sum(1).tolist() == sizes
    # every atom appears once, in its own crystal's row, in order
    assert sorted(idx[valid].tolist()) == list(range(sum(sizes)))
    for b in range(len(sizes)):
        assert (atom_batch[idx[b, valid[b]]] == b).all() and (idx[b, valid[b]].diff() > 0).all()
    types = torch.randint(1, 5, (sum(sizes),), generator=g)
    logits = torch.randn(sum(sizes), 100, generator=g)
    a = assign_multiset(logits, types, atom_batch, len(sizes))
    b = assign_multiset(logits, types, atom_batch, len(sizes), layout=(idx, valid))
    assert torch.equal(a, b)
    # the greedy picks the pair of highest log-probability first: the most likely (atom, type) pair of the whole
    # crystal is always kept
    logp = torch.log_softmax(logits.double(), -1)
    for c in range(len(sizes)):
        m = (atom_batch == c).nonzero().flatten()
        present = sorted(set(types[m].tolist()))
        sub = logp[m][:, [z - 1 for z in present]]
        k = int(sub.argmax())
        atom, z = m[k // len(present)], present[k % len(present)]
        assert int(a[atom]) == z
