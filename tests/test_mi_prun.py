"""MI-PRUN on synthetic boundary states: the Gaussian MI estimator, block/segment MI and Fast-Block-Select.

The synthetic chains keep every boundary at unit variance: block i maps h -> sqrt(1 - s_i^2) h + s_i e with fresh
noise e, so each coordinate's correlation across the block is sqrt(1 - s_i^2) and MI(h_i; h_{i+1}) = -d log(s_i) in
closed form (small s_i = identity-like, redundant block; s_i near 1 = a block that replaces its input).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from prunesearch.errors import BudgetError
from prunesearch.pruners.mi_prun import (
    block_mi,
    fast_block_select,
    gaussian_mi,
    removal_score,
    segment_mi,
)


def chain(noise: list[float], n: int = 2000, d: int = 8, seed: int = 0, fresh: dict[int, slice] | None = None):
    """[L+1, n, d] boundaries of blocks with per-block noise levels; ``fresh[i]`` makes block i copy its input
    exactly except for the coordinates in the slice, which it replaces by fresh noise."""
    g = torch.Generator().manual_seed(seed)
    states = [torch.randn(n, d, generator=g)]
    for i, s in enumerate(noise):
        h = states[-1]
        if fresh is not None and i in fresh:
            out = h.clone()
            out[:, fresh[i]] = torch.randn(n, d, generator=g)[:, fresh[i]]
        else:
            out = math.sqrt(1 - s * s) * h + s * torch.randn(n, d, generator=g)
        states.append(out)
    return torch.stack(states)


def run_lengths(blocks) -> list[int]:
    """Sorted lengths of the maximal contiguous runs of a set of blocks."""
    blocks, lengths = sorted(blocks), []
    for i, b in enumerate(blocks):
        if i and blocks[i - 1] == b - 1:
            lengths[-1] += 1
        else:
            lengths.append(1)
    return sorted(lengths)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.8, 0.95])
def test_gaussian_mi_matches_closed_form(rho):
    g = torch.Generator().manual_seed(1)
    n, d = 40000, 8
    x = torch.randn(n, d, generator=g)
    y = rho * x + math.sqrt(1 - rho * rho) * torch.randn(n, d, generator=g)
    exact = -0.5 * d * math.log(1 - rho * rho)
    assert gaussian_mi(x, y, shrinkage=1e-6) == pytest.approx(exact, rel=0.02, abs=0.01)
    # The default shrinkage only pulls the correlations in by a factor (1 - 1e-3).
    assert gaussian_mi(x, y) == pytest.approx(exact, rel=0.03, abs=0.01)


def test_gaussian_mi_is_symmetric_scale_free_and_rotation_invariant():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5000, 6, generator=g)
    y = 0.7 * x[:, [1, 0, 3, 2, 5, 4]] + 0.5 * torch.randn(5000, 6, generator=g)
    base = gaussian_mi(x, y, shrinkage=1e-6)
    assert gaussian_mi(y, x, shrinkage=1e-6) == pytest.approx(base, rel=1e-9)
    scaled = x.double() * torch.tensor([1e-3, 1.0, 50.0, 7.0, 0.2, 3.0], dtype=torch.float64) + 100.0
    assert gaussian_mi(scaled, y, shrinkage=1e-6) == pytest.approx(base, rel=1e-6)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    assert gaussian_mi(x @ rotation, y, shrinkage=1e-6) == pytest.approx(base, rel=1e-3)
    assert gaussian_mi(x, torch.randn(5000, 6, generator=g)) < 0.02


def test_shrinkage_caps_an_identity_and_survives_degenerate_columns():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20000, 4, generator=g)
    s = 1e-3
    cap = -0.5 * 4 * math.log(s * (2 - s))
    assert gaussian_mi(x, x, shrinkage=s) == pytest.approx(cap, rel=0.01)
    # A constant column and n < d would make the plain covariance singular; shrinkage keeps everything finite.
    x[:, 2] = 5.0
    assert math.isfinite(gaussian_mi(x, x.flip(1), shrinkage=s))
    few = torch.randn(5, 16, generator=g)
    assert math.isfinite(gaussian_mi(few, few + 0.1 * torch.randn(5, 16, generator=g)))
    with pytest.raises(ValueError):
        gaussian_mi(x, x, shrinkage=0.0)


def test_block_mi_ranks_an_identity_block_most_redundant():
    noise = [0.9, 0.6, 0.8, 0.7, 0.5, 1e-3, 0.6, 0.9]
    boundary = chain(noise)
    mi = block_mi(boundary)
    assert mi.shape == (len(noise),)
    assert int(mi.argmax()) == 5
    # Away from the shrinkage cap the values follow the closed form -d log(s).
    for i in (0, 2, 4):
        assert float(mi[i]) == pytest.approx(-8 * math.log(noise[i]), rel=0.1, abs=0.1)
    order = torch.argsort(mi, descending=True).tolist()
    assert order[:3] == [5, 4, 1] or order[:3] == [5, 4, 6]


def test_segment_mi_is_bounded_by_its_members():
    noise = [0.7, 0.3, 0.5, 0.05, 0.4, 0.8]
    boundary = chain(noise)
    single = block_mi(boundary)
    for i in range(len(noise)):
        assert segment_mi(boundary, i, i) == pytest.approx(float(single[i]))
    for start, end in [(0, 1), (1, 3), (2, 4), (1, 5), (3, 4)]:
        run = segment_mi(boundary, start, end)
        assert run <= float(single[start:end + 1].min()) + 0.05  # DPI, up to estimation noise
        # Closed form: the per-coordinate correlation across the run is the product of the members'.
        rho2 = math.prod(1 - s * s for s in noise[start:end + 1])
        assert run == pytest.approx(-0.5 * 8 * math.log(1 - rho2), rel=0.1, abs=0.1)
    with pytest.raises(ValueError):
        segment_mi(boundary, 3, 2)


def test_removal_score_counts_runs_by_their_segment_mi():
    boundary = chain([0.7, 0.3, 0.5, 0.05, 0.4, 0.8])
    single = block_mi(boundary)
    assert removal_score(boundary, [1, 3, 5]) == pytest.approx(float(single[[1, 3, 5]].sum()))
    assert removal_score(boundary, [2, 3, 5]) == pytest.approx(2 * segment_mi(boundary, 2, 3) + float(single[5]))


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_block_select_returns_valid_deterministic_sets(seed):
    g = torch.Generator().manual_seed(seed)
    noise = (0.05 + 0.9 * torch.rand(10, generator=g)).tolist()
    boundary = chain(noise, n=600, d=6, seed=seed)
    single = block_mi(boundary)
    for n_remove in range(0, 9):
        chosen = fast_block_select(boundary, n_remove)
        assert chosen == sorted(set(chosen)) and len(chosen) == n_remove
        assert 0 not in chosen and 9 not in chosen
        # Never worse than removing the top-ranked single blocks (its starting point), with the same run lengths.
        ranked = sorted(range(1, 9), key=lambda b: -float(single[b]))[:n_remove]
        assert removal_score(boundary, chosen) >= removal_score(boundary, ranked) - 1e-9
        assert run_lengths(chosen) == run_lengths(ranked)
    assert fast_block_select(boundary, 4) == fast_block_select(boundary.clone(), 4)
    custom = fast_block_select(boundary, 4, protected=(2, 3, 5))
    assert len(custom) == 4 and not {2, 3, 5} & set(custom)


def test_fast_block_select_finds_the_best_placement_when_every_segment_is_a_candidate():
    g = torch.Generator().manual_seed(7)
    noise = (0.05 + 0.9 * torch.rand(8, generator=g)).tolist()
    boundary = chain(noise, n=600, d=6, seed=7)
    single = block_mi(boundary)
    for n_remove in (2, 3, 4):
        top = sorted(range(1, 7), key=lambda b: -float(single[b]))[:n_remove]
        chosen = fast_block_select(boundary, n_remove, top_k=100, alternatives=100)
        assert run_lengths(chosen) == run_lengths(top)  # FBS relocates runs, it does not split or merge them
        best = max(
            removal_score(boundary, c)
            for c in itertools.combinations(range(1, 7), n_remove)
            if run_lengths(c) == run_lengths(top)
        )
        assert removal_score(boundary, chosen) == pytest.approx(best, rel=1e-12)


def test_fast_block_select_prefers_an_identity_like_run():
    noise = [0.9, 0.5, 0.6, 0.5, 0.4, 0.01, 0.01, 0.01, 0.5, 0.6, 0.4, 0.9]
    assert fast_block_select(chain(noise), 3) == [5, 6, 7]


def test_fast_block_select_moves_a_run_whose_members_are_redundant_only_alone():
    # Blocks 3 and 4 each copy half of the coordinates exactly (the top single-block MI) but replace different
    # halves, so across both nothing survives. Blocks 5 and 6 each add some noise: lower single MI, but the pair
    # as a whole keeps far more. Both are runs of two; FBS must move the pair from 3..4 to 5..6.
    noise = [0.9, 0.6, 0.6, 0.0, 0.0, 0.3, 0.3, 0.9]
    boundary = chain(noise, fresh={3: slice(0, 4), 4: slice(4, 8)})
    single = block_mi(boundary)
    assert set(torch.argsort(single, descending=True)[:2].tolist()) == {3, 4}
    assert segment_mi(boundary, 3, 4) < segment_mi(boundary, 5, 6)
    assert fast_block_select(boundary, 2) == [5, 6]


def test_fast_block_select_budget():
    boundary = chain([0.5] * 6, n=500, d=4)
    assert fast_block_select(boundary, 0) == []
    assert fast_block_select(boundary, 4) == [1, 2, 3, 4]
    with pytest.raises(BudgetError):
        fast_block_select(boundary, 5)
    with pytest.raises(BudgetError):
        fast_block_select(boundary, -1)
    with pytest.raises(BudgetError):
        fast_block_select(boundary, 3, protected=(0, 1, 2, 5))
    with pytest.raises(ValueError):
        fast_block_select(boundary, 1, protected=(6,))
