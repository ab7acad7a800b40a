"""The qwen backbone: one token per residue, offline loading, LoRA on a tiny pretrained-style Qwen2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainkit import make_dataset, make_tiny_qwen

torch = pytest.importorskip("torch")

from distfold.errors import DistfoldError  # noqa: E402
from distfold.plugins.backbone_qwen.backbone import SCRATCH_VOCAB, QwenBackbone  # noqa: E402


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    return make_tiny_qwen(tmp_path_factory.mktemp("qwen") / "tiny-qwen2")


def test_scratch_tokens_one_per_residue():
    bb = QwenBackbone(preset="tiny")
    ids, mask = bb.tokenize(["ACDY", "aXBZ"])
    assert ids.shape == (2, 4) and mask.all()
    assert [SCRATCH_VOCAB[i] for i in ids[0].tolist()] == list("ACDY")
    assert [SCRATCH_VOCAB[i] for i in ids[1].tolist()] == ["A", "X", "X", "X"]  # non-standard -> X


def test_presets_written_out_and_rebuilt_identically():
    bb = QwenBackbone(preset="small", seed=3)
    cfg = json.loads(json.dumps(bb.get_config()))
    assert cfg["hidden_size"] == 192 and cfg["num_hidden_layers"] == 4 and cfg["bidirectional"] is True
    again = QwenBackbone(**cfg)
    for (k, a), (_, b) in zip(bb.trainable_state_dict().items(), again.trainable_state_dict().items()):
        assert torch.equal(a, b), k


def test_scratch_attention_is_bidirectional():
    bb = QwenBackbone(preset="tiny").eval()
    with torch.no_grad():
        a, _ = bb(["ACDEFG"])
        b, _ = bb(["ACDEFW"])
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-4  # residue 0 sees residue 5


def test_bf16_returns_float32_features():
    bb = QwenBackbone(preset="tiny", precision="bf16").eval()
    with torch.no_grad():
        f, _ = bb(["ACDEF"])
    assert f.dtype == torch.float32 and torch.isfinite(f).all()


def test_unknown_preset_and_precision_are_input_errors():
    with pytest.raises(DistfoldError, match="preset"):
        QwenBackbone(preset="huge")
    with pytest.raises(DistfoldError, match="precision"):
        QwenBackbone(preset="tiny", precision="fp8")


def test_missing_base_model_is_one_line_error(tmp_path):
    for src in (str(tmp_path / "no-such-model"), "Qwen/not-a-real-model-distfold-test"):
        with pytest.raises(DistfoldError) as info:
            QwenBackbone(base_model=src)
        assert src in str(info.value) and "\n" not in str(info.value)


def test_pretrained_single_letter_tokens_and_lora(tiny_qwen):
    bb = QwenBackbone(base_model=str(tiny_qwen))
    assert bb.hidden_size == 32 and bb.bidirectional is False
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_qwen))
    ids, _ = bb.tokenize(["ABCW"])
    assert ids[0].tolist() == tok.convert_tokens_to_ids(list("ABCW"))  # never the merged "ABC" token
    trainable = [n for n, p in bb.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    modules = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert modules == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert set(bb.trainable_state_dict()) and all("lora_" in k for k in bb.trainable_state_dict())
    f, mask = bb(["MKV", "MKVLA"])
    assert f.shape == (2, 5, 32) and f.dtype == torch.float32


def test_gradient_checkpointing_backward(tiny_qwen):
    bb = QwenBackbone(base_model=str(tiny_qwen), gradient_checkpointing=True).train()
    f, _ = bb(["MKVLAG"])
    f.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in bb.named_parameters() if "lora_B" in n)


def test_lora_training_updates_only_adapter_and_head(tiny_qwen, tmp_path):
    from safetensors.torch import load_file

    from distfold.pipeline.model import DistanceModel
    from distfold.pipeline.train import TrainOptions, train

    ds = make_dataset(tmp_path / "ds")
    out = tmp_path / "lora"
    torch.set_num_threads(1)
    opts = TrainOptions(backbone_params={"base_model": str(tiny_qwen)}, crop=48, batch_size=2, lr=1e-2,
                        warmup=0, max_steps=3, seed=0)
    train(ds, out, opts, quiet=True)
    adapter_cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(tiny_qwen)  # referenced, not copied
    assert sorted(p.name for p in (out / "adapter").iterdir()) == ["README.md", "adapter_config.json",
                                                                      "adapter_model.safetensors"] or \
        sorted(p.name for p in (out / "adapter").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert not (out / "backbone.safetensors").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["base_model"] == str(tiny_qwen)

    trained = DistanceModel.load(out)
    fresh = QwenBackbone(base_model=str(tiny_qwen), seed=0)
    base_now = {k: v for k, v in trained.backbone.model.state_dict().items() if "lora_" not in k}
    base_then = {k: v for k, v in fresh.model.state_dict().items() if "lora_" not in k}
    assert base_now.keys() == base_then.keys()
    for k in base_now:
        assert torch.equal(base_now[k], base_then[k]), f"base weight {k} changed"
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    init = fresh.trainable_state_dict()
    changed = [k for k in adapter if not torch.equal(adapter[k], init[k])]
    assert any("lora_B" in k for k in changed)
    head_init = DistanceModel.build(("qwen", {"base_model": str(tiny_qwen)}),
                                    ("regression", {"seed": 0}), ("identity", {}),
                                    prior=trained.prior).head.state_dict()
    assert any(not torch.equal(v, head_init[k]) for k, v in trained.head.state_dict().items())
    d = trained.predict(["MKTAYIAKQR"])[0]["distance"]
    assert d.shape == (10, 10) and np.isfinite(d).all()


# -- the from-scratch stack in plain torch (qwen2_torch) against transformers.Qwen2Model ---------------

def _reference_qwen2(backbone: QwenBackbone):
    """transformers.Qwen2Model configured as the from-scratch backbone used to build it, holding its weights."""
    from transformers import Qwen2Config, Qwen2Model

    c = backbone.model_config
    config = Qwen2Config(
        vocab_size=c.vocab_size, max_position_embeddings=c.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta}, pad_token_id=0, bos_token_id=None,
        eos_token_id=None, use_cache=False, tie_word_embeddings=False, attention_dropout=0.0,
        initializer_range=0.02, rms_norm_eps=1e-6, hidden_size=c.hidden_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, intermediate_size=c.intermediate_size)
    config.is_causal = c.is_causal
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(backbone.seed)
        ref = Qwen2Model(config)
    for module in ref.modules():
        if isinstance(getattr(module, "is_causal", None), bool):
            module.is_causal = c.is_causal
    return ref


SCRATCH_SHAPES = [
    dict(preset="tiny"),  # 2 heads sharing 1 key/value head
    dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, intermediate_size=40),
    dict(hidden_size=36, num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2, intermediate_size=24,
         rope_theta=500.0),
]


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("shape", SCRATCH_SHAPES)
def test_scratch_stack_equals_transformers_qwen2(shape, bidirectional):
    """Same keys and initial weights for a seed, same outputs with and without padding."""
    bb = QwenBackbone(**shape, bidirectional=bidirectional, seed=7).eval()
    assert "transformers" not in type(bb.model).__module__
    ref = _reference_qwen2(bb).eval()
    ours, theirs = bb.model.state_dict(), ref.state_dict()
    assert list(ours) == list(theirs)
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), f"initial {k} differs"
    # random (not initial) weights, so that biases and norms matter too
    gen = torch.Generator().manual_seed(1)
    random = {k: torch.randn(v.shape, generator=gen) * 0.3 for k, v in ours.items()}
    bb.load_trainable_state_dict(random)
    ref.load_state_dict(random, strict=True)
    for batch in (["MKTAYIAKQR"], ["ACDEFGHIKLMNPQRSTVWY" * 3, "MKV", "GGSGGSGGSGGSGG"], ["WY" * 70, "W" * 140]):
        with torch.no_grad():
            f, mask = bb(batch)
            ids, _ = bb.tokenize(batch)
            g = ref(input_ids=ids, attention_mask=mask.long(), use_cache=False).last_hidden_state
        torch.testing.assert_close(f[mask], g[mask], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(f, g, rtol=1e-5, atol=1e-5)  # padded positions too


def test_scratch_stack_bf16_equals_transformers_qwen2():
    bb = QwenBackbone(preset="tiny", precision="bf16", seed=5).eval()
    ref = _reference_qwen2(bb).to(torch.bfloat16).eval()
    ref.load_state_dict(bb.model.state_dict(), strict=True)
    batch = ["MKTAYIAKQRQISFVKSHFSRQ", "MKVL"]
    with torch.no_grad():
        f, mask = bb(batch)
        ids, _ = bb.tokenize(batch)
        g = ref(input_ids=ids, attention_mask=mask.long(), use_cache=False).last_hidden_state
    assert f.dtype == torch.float32 and g.dtype == torch.bfloat16
    torch.testing.assert_close(f, g.float(), rtol=1.6e-2, atol=1e-5)


def test_scratch_stack_gradients_equal_transformers_qwen2():
    bb = QwenBackbone(preset="tiny", seed=2).train()
    ref = _reference_qwen2(bb).train()
    ref.load_state_dict(bb.model.state_dict(), strict=True)
    batch = ["MKTAYIAKQRQISFVKSHF", "MKVL"]
    f, mask = bb(batch)
    ids, _ = bb.tokenize(batch)
    g = ref(input_ids=ids, attention_mask=mask.long(), use_cache=False).last_hidden_state
    weights = torch.linspace(-1, 1, f.numel()).reshape(f.shape)
    (f[mask] * weights[mask]).sum().backward()
    (g[mask] * weights[mask]).sum().backward()
    theirs = dict(ref.named_parameters())
    for name, p in bb.model.named_parameters():
        torch.testing.assert_close(p.grad, theirs[name].grad, rtol=1e-5, atol=1e-6, msg=name)


def test_scratch_gradient_checkpointing_same_gradients():
    grads = []
    for checkpointing in (False, True):
        bb = QwenBackbone(preset="tiny", seed=4, gradient_checkpointing=checkpointing).train()
        f, mask = bb(["MKTAYIAKQR", "MKV"])
        f[mask].pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in bb.model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7, msg=name)


def test_shipped_checkpoint_loads_and_matches_transformers():
    """The default model's backbone.safetensors (written with transformers.Qwen2Model) loads unchanged."""
    from pathlib import Path

    from safetensors.torch import load_file

    import distfold

    model_dir = Path(distfold.__file__).resolve().parent / "default_model"
    params = json.loads((model_dir / "config.json").read_text())["components"]["backbone"]["params"]
    bb = QwenBackbone(**params).eval()
    state = load_file(str(model_dir / "backbone.safetensors"))
    bb.load_trainable_state_dict(state)
    ref = _reference_qwen2(bb).eval()
    ref.load_state_dict(state, strict=True)
    seq = "".join(line.strip() for line in (Path(__file__).parent.parent / "examples" / "example.fasta")
                  .read_text().splitlines() if not line.startswith(">"))
    with torch.no_grad():
        f, mask = bb([seq, seq[:60]])
        ids, _ = bb.tokenize([seq, seq[:60]])
        g = ref(input_ids=ids, attention_mask=mask.long(), use_cache=False).last_hidden_state
    torch.testing.assert_close(f, g, rtol=1e-5, atol=1e-5)
