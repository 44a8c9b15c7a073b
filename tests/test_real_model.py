"""The same guarantees on the real SmolLM2-135M (slow: run with ``pytest -m slow``)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunesearch.data import eval_windows, token_ids
from prunesearch.evaluate import perplexity, with_units
from prunesearch.models import load_model
from prunesearch.pruners import CalibrationSpec, mask_model, materialize
from prunesearch.space import ModelShape, SearchSpace, param_count

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real():
    return load_model("smollm2-135m")


def test_real_model_prunes_saves_loads_and_generates(real, tmp_path):
    shape = ModelShape.from_config(real.model.config)
    assert param_count(SearchSpace(shape).sample_at_budget(0.0, 0)) == 134_515_008
    arch = with_units(real, SearchSpace(shape).sample_at_budget(0.25, seed=3), CalibrationSpec(count=8, length=128))
    pruned = materialize(real.model, arch)
    assert sum(p.numel() for p in pruned.parameters()) == param_count(arch)

    windows = eval_windows(token_ids(real.tokenizer, "ptb-valid"), 128, 384)
    with torch.no_grad():
        got = pruned(windows).logits
        want = mask_model(real.model, arch)(windows).logits
    torch.testing.assert_close(got, want, atol=5e-4, rtol=1e-4)

    pruned.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(windows).logits, got, atol=0, rtol=0)
    assert perplexity(loaded, windows, progress=False).ppl < 10 * perplexity(real.model, windows, progress=False).ppl

    prompt = real.tokenizer("The capital of France is", return_tensors="pt")
    out = loaded.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 12


def test_real_dense_perplexity_is_sane(real):
    windows = eval_windows(token_ids(real.tokenizer, "wiki-valid"), 512, 1024)
    assert 5 < perplexity(real.model, windows, progress=False).ppl < 30


def test_real_refit_lowers_held_out_perplexity(real):
    """The least-squares refit, calibrated on PTB train, must help on test text of both corpora."""
    from prunesearch.pruners import RefitSpec, load_refit
    from prunesearch.space import Architecture

    shape = ModelShape.from_config(real.model.config)
    even = SearchSpace(shape).repair(Architecture.dense(shape), 0.2)
    arch = with_units(real, even, CalibrationSpec(count=8, length=128))
    refit = load_refit(real.model, real.tokenizer, real.fingerprint, RefitSpec(count=32), progress=False)
    plain, fitted = materialize(real.model, arch), materialize(real.model, arch, refit)
    for split in ("ptb-test", "wiki-test"):
        windows = eval_windows(token_ids(real.tokenizer, split), 512, 2048)
        before, after = (perplexity(m, windows, progress=False).ppl for m in (plain, fitted))
        assert after < 0.97 * before, (split, before, after)
