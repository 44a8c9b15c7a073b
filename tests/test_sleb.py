"""SLEB block elimination on tiny random models: the layer-by-layer forward, the greedy order, and its cache."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_model, word_tokenizer
from prunesearch.errors import ArchitectureError, BudgetError
from prunesearch.pruners import sleb as sleb_module
from prunesearch.pruners.sleb import BlockRunner, SlebSpec, removable_blocks, sleb, sleb_order


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine spinning threads make them 5x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def windows(count: int = 4, length: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, len(word_tokenizer()), (count, length), generator=generator)


def six_blocks(seed: int = 0):
    return tiny_model("llama", seed=seed, num_hidden_layers=6)


def sampled_windows(model, count: int = 4, length: int = 16, seed: int = 0) -> torch.Tensor:
    """Text sampled from ``model`` itself: in expectation no other model predicts it better (Gibbs' inequality),
    so skipping any block that does something raises the loss, while skipping an identity block changes nothing."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (count, 1), generator=generator)
    with torch.no_grad():
        for _ in range(length - 1):
            probs = model(input_ids=ids, use_cache=False).logits[:, -1].softmax(-1)
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=generator)], dim=1)
    return ids


def plant_identity(model, index: int) -> None:
    """Zero the block's output projections so it adds nothing to the residual stream."""
    with torch.no_grad():
        model.model.layers[index].self_attn.o_proj.weight.zero_()
        model.model.layers[index].mlp.down_proj.weight.zero_()


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2"])
def test_layer_by_layer_forward_equals_model_logits(kind):
    model = tiny_model(kind)
    ids = windows(count=5)
    runner = BlockRunner(model, ids, batch_size=2)
    states = runner.run(range(len(model.model.layers)), runner.embed())
    ours = torch.cat([runner.head(h) for h in states])
    with torch.no_grad():
        reference = model(input_ids=ids, use_cache=False).logits
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_nll_is_the_models_mean_next_token_loss():
    model = tiny_model()
    ids = windows()
    runner = BlockRunner(model, ids, batch_size=3)
    with torch.no_grad():
        states = runner.run(range(len(model.model.layers)), runner.embed())
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    assert runner.nll(states) == pytest.approx(loss.item(), rel=1e-5)


def test_order_is_deterministic_and_never_removes_protected_blocks():
    model, ids = six_blocks(), windows()
    first = sleb_order(model, ids, 4, progress=False)
    assert first == sleb_order(model, ids, 4, progress=False)
    assert sorted(first) == [1, 2, 3, 4]
    guarded = sleb_order(model, ids, 3, protected=(0, 2, 5), progress=False)
    assert sorted(guarded) == [1, 3, 4]


def test_order_is_prefix_consistent():
    model, ids = six_blocks(), windows()
    assert sleb_order(model, ids, 2, progress=False) == sleb_order(model, ids, 4, progress=False)[:2]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_reuse_and_naive_give_the_same_order(batch_size):
    model, ids = six_blocks(seed=1), windows(count=5)
    reused = sleb_order(model, ids, 4, reuse=True, progress=False, batch_size=batch_size)
    naive = sleb_order(model, ids, 4, reuse=False, progress=False, batch_size=batch_size)
    assert reused == naive


def test_reuse_and_naive_agree_when_the_last_block_is_removable():
    model, ids = six_blocks(seed=2), windows()
    kwargs = dict(protected=(0,), progress=False)
    assert sleb_order(model, ids, 5, reuse=True, **kwargs) == sleb_order(model, ids, 5, reuse=False, **kwargs)


def test_a_shortlist_covering_every_candidate_is_the_exact_rule():
    model, ids = six_blocks(seed=3), windows(count=4)
    exact = sleb_order(model, ids, 4, progress=False, batch_size=2)
    assert sleb_order(model, ids, 4, progress=False, batch_size=2, shortlist=4) == exact


def test_a_shortlist_runs_fewer_blocks_and_still_finds_a_planted_block(monkeypatch):
    model = six_blocks()
    plant_identity(model, 3)
    ids = sampled_windows(model)
    calls = []
    real = BlockRunner.block

    def counting(self, index, states, part=sleb_module.ALL):
        calls.append(len(states))
        return real(self, index, states, part)

    monkeypatch.setattr(BlockRunner, "block", counting)
    assert sleb_order(model, ids, 1, progress=False, shortlist=1) == [3]
    screened, calls[:] = sum(calls), []
    assert sleb_order(model, ids, 1, progress=False, batch_size=len(ids) // 2) == [3]
    assert screened < sum(calls)
    with pytest.raises(ValueError, match="shortlist"):
        sleb_order(model, ids, 1, progress=False, shortlist=-1)


@pytest.mark.parametrize("planted", [1, 2, 3, 4])
def test_a_planted_identity_block_is_removed_first(planted):
    model = six_blocks()
    plant_identity(model, planted)
    assert sleb_order(model, sampled_windows(model), 1, progress=False) == [planted]


def test_too_large_a_budget_raises_budget_error():
    model = tiny_model()  # 4 blocks: only 1 and 2 are removable
    with pytest.raises(BudgetError, match="only 2 are removable"):
        sleb_order(model, windows(), 3, progress=False)
    with pytest.raises(BudgetError, match="negative"):
        sleb_order(model, windows(), -1, progress=False)
    assert sleb_order(model, windows(), 0, progress=False) == []


def test_out_of_range_protected_block_is_rejected():
    assert removable_blocks(4) == [1, 2]
    with pytest.raises(ArchitectureError, match="out of range"):
        removable_blocks(4, protected=(0, 4))


def test_cached_order_serves_smaller_budgets(monkeypatch):
    model, tok = six_blocks(), word_tokenizer()
    monkeypatch.setattr(sleb_module, "token_ids", lambda _tok, _data: windows(count=1, length=400)[0])
    calls = []
    real = sleb_module.sleb_order

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(sleb_module, "sleb_order", counting)
    spec = SlebSpec(count=4, length=16)
    full = sleb(model, tok, "fp-a", 3, spec, progress=False)
    assert sleb(model, tok, "fp-a", 2, spec, progress=False) == full[:2]
    assert sleb(model, tok, "fp-a", 3, spec, progress=False) == full
    assert calls == [3]
    assert sleb(model, tok, "fp-a", 4, spec, progress=False)[:3] == full
    sleb(model, tok, "fp-b", 1, spec, progress=False)
    sleb(model, tok, "fp-a", 1, SlebSpec(count=4, length=16, seed=1), progress=False)
    assert calls == [3, 4, 1, 1]
    with pytest.raises(BudgetError):
        sleb(model, tok, "fp-a", 5, spec, progress=False)
