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
