"""The secondary-structure read-out's options (issue 17): defaults are the original read-out,
parameter for parameter; ``ss_channels`` / ``ss_dilations`` widen and deepen it; ``--ss-only``
with ``--head-params ss_*`` builds a fresh one on a frozen model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from distfold.pipeline.model import DistanceModel  # noqa: E402
from distfold.plugins.distance_heads.regression import RegressionHead, SecondaryStructureReadout  # noqa: E402

ORIGINAL_KEYS = {"norm.weight", "norm.bias", "conv.weight", "conv.bias", "mix.weight", "mix.bias",
                 "out.weight", "out.bias"}


def test_default_options_are_the_original_read_out():
    head = RegressionHead(hidden_size=32, pair_dim=8, n_blocks=1, ss_weight=0.5, ss_kernel=5, seq_dim=16)
    assert set(head.ss.state_dict()) == ORIGINAL_KEYS
    assert head.ss.conv.out_channels == 16
    config = head.get_config()
    assert config["ss_channels"] == 0 and config["ss_dilations"] == []
    # an older config without the new keys builds the same module, weight for weight (same seed)
    old = {k: v for k, v in config.items() if k not in ("ss_channels", "ss_dilations")}
    again = RegressionHead.from_config(old)
    for k, v in head.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, rtol=0, atol=0)


def test_the_shipped_model_loads_with_its_read_out():
    model = DistanceModel.load(Path(__file__).parents[1] / "core" / "default_model")
    assert set(model.head.ss.state_dict()) == ORIGINAL_KEYS | {k for k in model.head.ss.state_dict()
                                                               if k.startswith("dilated.")}
    params = model.config["components"]["distance_head"]["params"]
    assert len(model.head.ss.dilated) == len(params.get("ss_dilations") or [])


def test_dilations_widen_what_a_residue_sees():
    torch.manual_seed(0)
    plain = SecondaryStructureReadout(8, 6, 5).eval()
    deep = SecondaryStructureReadout(8, 6, 5, dilations=(2, 4)).eval()
    assert len(deep.dilated) == 2 and set(deep.state_dict()) > ORIGINAL_KEYS
    x = torch.randn(1, 40, 8)
    mask = torch.ones(1, 40, dtype=torch.bool)
    y = x.clone()
    # one feature (a LayerNorm ignores a shift of all), 8 residues away: beyond kernel // 2 = 2,
    # within 2 * (1 + 2 + 4) = 14
    y[0, 20 + 8, 0] += 5.0
    with torch.no_grad():
        assert torch.equal(plain(x, mask)[0, 20], plain(y, mask)[0, 20])
        assert not torch.allclose(deep(x, mask)[0, 20], deep(y, mask)[0, 20])
        z = x.clone()
        z[0, 20 + 15, 0] += 5.0  # 15 away: beyond what even the deep read-out sees
        assert torch.equal(deep(x, mask)[0, 20], deep(z, mask)[0, 20])


def test_padding_does_not_leak_into_the_dilated_layers():
    torch.manual_seed(1)
    net = SecondaryStructureReadout(8, 6, 5, dilations=(2, 4)).eval()
    x = torch.randn(1, 12, 8)
    padded = torch.cat([x, 50 * torch.randn(1, 20, 8)], 1)
    mask = torch.zeros(1, 32, dtype=torch.bool)
    mask[0, :12] = True
    with torch.no_grad():
        alone = net(x, torch.ones(1, 12, dtype=torch.bool))
        batched = net(padded, mask)[:, :12]
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_add_ss_readout_keeps_or_replaces():
    head = RegressionHead(hidden_size=32, pair_dim=8, n_blocks=1, seq_dim=16)
    assert head.ss is None
    head.add_ss_readout(0.5, 5)
    first = head.ss
    head.add_ss_readout(0.5, 7, ss_channels=24, ss_dilations=[2])
    assert head.ss is first  # kept without replace
    head.add_ss_readout(0.5, 7, ss_channels=24, ss_dilations=[2], replace=True)
    assert head.ss is not first and head.ss.conv.out_channels == 24 and len(head.ss.dilated) == 1
    config = head.get_config()
    assert (config["ss_kernel"], config["ss_channels"], config["ss_dilations"]) == (7, 24, [2])
    rebuilt = RegressionHead.from_config(config)
    assert set(rebuilt.ss.state_dict()) == set(head.ss.state_dict())
    with pytest.raises(ValueError, match="ss_dilations"):
        head.add_ss_readout(0.5, 5, ss_dilations=[0], replace=True)


@pytest.fixture(scope="module")
def labelled_and_model(tmp_path_factory):
    """A tiny model (3 steps) and the test chains with DSSP labels."""
    from test_train import _labelled  # the test dataset with labels, as data build stores them
    from trainkit import make_dataset

    from distfold.pipeline.train import TrainOptions, train

    root = tmp_path_factory.mktemp("ssro")
    ds = make_dataset(root / "ds")
    torch.set_num_threads(1)
    opts = TrainOptions(backbone_params={"preset": "tiny"}, crop=64, batch_size=4, lr=3e-3, warmup=1,
                        max_steps=3, log_every=1, seed=0)
    train(ds, root / "m", opts, quiet=True)
    return _labelled(ds, root / "dsl"), root / "m"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distfold", "train", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_ss_only_with_read_out_options_builds_a_fresh_read_out(labelled_and_model, tmp_path):
    labelled, base_dir = labelled_and_model
    common = ["--init", str(base_dir), "--ss-only", "--crop", "64", "--batch-size", "4", "--max-steps", "2",
              "--warmup", "1", "--threads", "1"]
    bad = _cli(str(labelled), "-o", str(tmp_path / "bad"), *common, "--head-params", '{"pair_dim": 4}')
    assert bad.returncode != 0 and "--head-params" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad" / "config.json").exists()
    first = _cli(str(labelled), "-o", str(tmp_path / "a"), *common)
    assert first.returncode == 0, first.stderr[-2000:]
    wide = _cli(str(labelled), "-o", str(tmp_path / "b"),
                "--init", str(tmp_path / "a"), "--ss-only", "--crop", "64", "--batch-size", "4", "--max-steps", "2",
                "--warmup", "1", "--threads", "1", "--head-params", '{"ss_channels": 24, "ss_dilations": [2, 4]}')
    assert wide.returncode == 0, wide.stderr[-2000:]
    a, b = DistanceModel.load(tmp_path / "a"), DistanceModel.load(tmp_path / "b")
    params = b.config["components"]["distance_head"]["params"]
    assert params["ss_channels"] == 24 and params["ss_dilations"] == [2, 4]
    assert b.head.ss.conv.out_channels == 24 and len(b.head.ss.dilated) == 2  # replaced, not a's read-out
    seq = "MKTAYIAKQRQISFVKSHFSRQ"
    pa, pb = a.predict([seq], shrink=False)[0], b.predict([seq], shrink=False)[0]
    np.testing.assert_array_equal(pa["distance"], pb["distance"])  # the distances stay frozen
    assert pb["ss_probs"].shape == (len(seq), 3)
