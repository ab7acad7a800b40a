"""The esm backbone: ESM-2 from local weights, one position per residue, LoRA or frozen + projection.

Everything runs on a tiny randomly initialised ESM-2-shaped model with the real ESM-2
tokenizer (vocab.txt written by the fixture), saved with save_pretrained; nothing downloads.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainkit import make_dataset, make_tiny_esm, make_tiny_qwen

torch = pytest.importorskip("torch")

from distfold.errors import DistfoldError  # noqa: E402
from distfold.plugins.backbone_esm.backbone import EsmBackbone  # noqa: E402
from distfold.testing import CHECKS, check_backbone  # noqa: E402


@pytest.fixture(scope="module")
def tiny_esm(tmp_path_factory):
    return make_tiny_esm(tmp_path_factory.mktemp("esm") / "tiny-esm2")


def test_one_token_per_residue_with_cls_and_eos_stripped(tiny_esm):
    from transformers import AutoTokenizer, EsmModel

    bb = EsmBackbone(base_model=str(tiny_esm)).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_esm))
    ids, mask = bb.tokenize(["MKV", "ACDY"])
    assert ids.shape == (2, 6) and mask.tolist() == [[True] * 3 + [False], [True] * 4]
    assert ids[1].tolist() == tok("ACDY")["input_ids"]  # <cls> A C D Y <eos>, as ESM-2 was trained
    assert ids[0].tolist() == tok("MKV")["input_ids"] + [tok.pad_token_id]
    # lower case is the same residue; a letter outside the vocabulary (J) is X
    assert bb.tokenize(["acdy"])[0].tolist() == bb.tokenize(["ACDY"])[0].tolist()
    assert bb.tokenize(["J"])[0][0, 1].item() == tok.convert_tokens_to_ids("X")
    # position i of the output is residue i: the plain model's states without <cls> and <eos>
    # (a fresh LoRA adapter adds zero: lora_B starts at 0)
    plain = EsmModel.from_pretrained(str(tiny_esm), add_pooling_layer=False).eval()
    with torch.no_grad():
        ref = plain(input_ids=torch.tensor([tok("MKTAYIAKQR")["input_ids"]])).last_hidden_state[0, 1:-1]
        feats, _ = bb(["MKTAYIAKQR", "GS"])
    assert torch.allclose(feats[0], ref, atol=1e-5)


@pytest.mark.parametrize("params", [{}, {"finetune": "frozen"}, {"finetune": "frozen", "projection_size": 24},
                                    {"gradient_checkpointing": True, "lora_r": 4}],
                         ids=["lora", "frozen", "frozen-proj24", "lora-ckpt"])
def test_conformance_suite(tiny_esm, params):
    check_backbone(EsmBackbone(base_model=str(tiny_esm), **params))
    assert [c.__name__ for c in CHECKS["backbone"]][0] == "check_backbone_protocol"


def test_lora_trains_only_adapters_on_attention_and_dense_layers(tiny_esm):
    bb = EsmBackbone(base_model=str(tiny_esm))
    assert bb.hidden_size == 32 and bb.is_pretrained is True
    trainable = [n for n, p in bb.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    modules = {n.split(".lora_")[0].split(".layer.")[1].split(".", 1)[1] for n in trainable}
    assert modules == {"attention.self.query", "attention.self.key", "attention.self.value",
                       "attention.output.dense", "intermediate.dense", "output.dense"}
    assert all("lora_" in k for k in bb.trainable_state_dict())


def test_frozen_mode_trains_a_layer_mix_and_projection_only(tiny_esm):
    bb = EsmBackbone(base_model=str(tiny_esm), finetune="frozen", projection_size=16).train()
    assert bb.hidden_size == 16
    assert sorted(n for n, p in bb.named_parameters() if p.requires_grad) == \
        ["layer_logits", "projection.bias", "projection.weight"]
    assert not bb.model.training  # the language model stays in eval mode
    f, _ = bb(["MKVLAG"])
    f.sum().backward()
    assert bb.layer_logits.grad is not None and bb.projection.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in bb.model.parameters())


def test_gradient_checkpointing_backward(tiny_esm):
    bb = EsmBackbone(base_model=str(tiny_esm), gradient_checkpointing=True).train()
    f, _ = bb(["MKVLAG", "MK"])
    f.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in bb.named_parameters() if "lora_B" in n)


def test_bf16_returns_float32_features(tiny_esm):
    for mode in ("lora", "frozen"):
        bb = EsmBackbone(base_model=str(tiny_esm), precision="bf16", finetune=mode).eval()
        with torch.no_grad():
            f, _ = bb(["ACDEF"])
        assert f.dtype == torch.float32 and torch.isfinite(f).all(), mode
        assert next(bb.model.parameters()).dtype == torch.bfloat16


def test_errors_are_one_line(tiny_esm, tmp_path):
    with pytest.raises(DistfoldError, match="needs base_model"):
        EsmBackbone()
    for src in (str(tmp_path / "no-such-model"), "facebook/esm2-not-a-real-model-distfold-test"):
        with pytest.raises(DistfoldError) as info:
            EsmBackbone(base_model=src)
        assert src in str(info.value) and "\n" not in str(info.value)
    qwen = make_tiny_qwen(tmp_path / "qwen")
    with pytest.raises(DistfoldError, match="not ESM-2"):
        EsmBackbone(base_model=str(qwen))
    with pytest.raises(DistfoldError, match="projection_size"):
        EsmBackbone(base_model=str(tiny_esm), projection_size=8)
    with pytest.raises(DistfoldError, match="finetune"):
        EsmBackbone(base_model=str(tiny_esm), finetune="full")


def test_train_then_predict_end_to_end(tiny_esm, tmp_path):
    """`distfold train DS --backbone esm --base-model DIR`, then `distfold predict --model OUT`."""
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from distfold.cli.main import cli

    ds = make_dataset(tmp_path / "ds")
    out = tmp_path / "esm-model"
    runner = CliRunner()
    res = runner.invoke(cli, ["train", str(ds), "-o", str(out), "--backbone", "esm", "--base-model", str(tiny_esm),
                              "--crop", "48", "--batch-size", "2", "--max-steps", "3", "--warmup", "0",
                              "--lr", "1e-2", "--threads", "1", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    config = json.loads((out / "config.json").read_text())
    assert config["components"]["backbone"]["name"] == "esm" and config["base_model"] == str(tiny_esm)
    adapter_cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(tiny_esm)  # referenced, not copied
    assert not (out / "backbone.safetensors").exists()
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())  # trained

    res = runner.invoke(cli, ["predict", "--model", str(out), "MKTAYIAKQRQISFVKSHFSRQ", "-o", str(tmp_path / "p"),
                              "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    d = np.load(tmp_path / "p" / "query.distmat.npy")
    assert d.shape == (22, 22) and np.isfinite(d).all()
    # the model's config agrees with --backbone esm, and not with --backbone qwen
    res = runner.invoke(cli, ["predict", "--model", str(out), "--backbone", "esm", "MKV", "-o", str(tmp_path / "q")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["predict", "--model", str(out), "--backbone", "qwen", "MKV", "-o", str(tmp_path / "q")])
    assert res.exit_code == 2 and "built from backbone esm" in res.output


def test_frozen_model_saves_and_loads(tiny_esm, tmp_path):
    from distfold.pipeline.model import DistanceModel
    from distfold.pipeline.train import TrainOptions, train

    torch.set_num_threads(1)
    ds = make_dataset(tmp_path / "ds")
    out = tmp_path / "frozen"
    opts = TrainOptions(backbone="esm", backbone_params={"base_model": str(tiny_esm), "finetune": "frozen"},
                        crop=48, batch_size=2, lr=1e-2, warmup=0, max_steps=2, seed=0)
    train(ds, out, opts, quiet=True)
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_esm) and cfg["distfold_adapter"] == "esm-frozen-projection"
    model = DistanceModel.load(out)
    assert model.backbone.finetune == "frozen"
    again = DistanceModel.load(out)
    seq = "MKTAYIAKQR"
    assert np.array_equal(model.predict([seq])[0]["distance"], again.predict([seq])[0]["distance"])
    init = EsmBackbone(base_model=str(tiny_esm), finetune="frozen", seed=0).trainable_state_dict()
    assert not torch.equal(model.backbone.projection.weight, init["projection.weight"])  # trained and restored


def test_train_device_option(tmp_path):
    """`distfold train --device`: cpu trains here; cuda without CUDA is a one-line error."""
    from click.testing import CliRunner

    from distfold.cli.main import cli

    ds = make_dataset(tmp_path / "ds")
    common = ["train", str(ds), "--preset", "tiny", "--crop", "32", "--batch-size", "1", "--max-steps", "1",
              "--warmup", "0", "--json"]
    res = CliRunner().invoke(cli, [*common, "-o", str(tmp_path / "cpu"), "--device", "cpu"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["device"] == "cpu"
    if not torch.cuda.is_available():
        res = CliRunner().invoke(cli, [*common, "-o", str(tmp_path / "gpu"), "--device", "cuda"])
        assert res.exit_code == 1 and "CUDA is not available" in res.output
        assert len(res.output.strip().splitlines()) == 1


def test_loads_from_the_local_hugging_face_cache(tiny_esm, tmp_path):
    """A Hugging Face id resolves in the local cache (HF_HUB_CACHE), offline: the layout
    `hf download` leaves (models--ORG--NAME/refs/main -> snapshots/<commit>/files)."""
    import os
    import shutil
    import subprocess
    import sys

    cache = tmp_path / "hub"
    repo = cache / "models--facebook--esm2_tiny_random"
    commit = "0" * 40
    shutil.copytree(tiny_esm, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    code = ("from distfold.plugins.backbone_esm.backbone import EsmBackbone\n"
            "bb = EsmBackbone(base_model='facebook/esm2_tiny_random').eval()\n"
            "f, m = bb(['MKV'])\n"
            "print(tuple(f.shape), bb.base_model)\n")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "(1, 3, 32) facebook/esm2_tiny_random"
