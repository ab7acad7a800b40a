"""DistanceModel (the API predict/evaluate build on) and the separation prior."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainkit import make_dataset

torch = pytest.importorskip("torch")

from distfold.data.dataset import Dataset  # noqa: E402
from distfold.errors import DistfoldError, InputError  # noqa: E402
from distfold.pipeline.model import DistanceModel, default_model_path  # noqa: E402
from distfold.pipeline.prior import SeparationPrior  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return Dataset(make_dataset(tmp_path_factory.mktemp("ds") / "ds"))


@pytest.fixture(scope="module")
def prior(dataset):
    return SeparationPrior().fit(dataset, "train")


@pytest.fixture(scope="module", params=["regression", "distogram"])
def model(request, prior):
    m = DistanceModel.build(("qwen", {"preset": "tiny"}), (request.param, {"pair_dim": 8, "n_blocks": 2}),
                            ("log1p", {"scale": 5.0}), prior=prior, crop=64)
    return m.eval()


def test_prior_is_a_plausible_distance_table(prior, dataset):
    m = prior.matrix(100)
    assert m.shape == (100, 100) and m.dtype == np.float32
    assert np.allclose(m, m.T) and np.all(np.diag(m) == 0)
    assert 3.7 < m[0, 1] < 3.9  # consecutive C-alpha atoms
    assert m[0, 2] > m[0, 1] and m[0, 40] > m[0, 4]
    # a crop keeps the full chain's length bucket and |i - j|
    np.testing.assert_array_equal(prior.matrix(300, 37, 50), prior.matrix(300)[37:87, 37:87])
    # median statistic: the exact median of the observed i, i+1 distances of the bucket
    d1 = np.concatenate([np.diagonal(dataset[i].distances(), 3) for i in dataset.indices("train")
                         if 64 <= dataset[i].record["length"] < 128])
    assert abs(prior.matrix(110)[0, 3] - np.median(d1)) < 1e-3


def test_prior_json_round_trip(prior, tmp_path):
    prior.save(tmp_path / "prior.json")
    again = SeparationPrior.load(tmp_path / "prior.json")
    np.testing.assert_allclose(again.matrix(120), prior.matrix(120), atol=1e-3)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="bad.json"):
        SeparationPrior.load(tmp_path / "bad.json")


def test_predict_contract(model):
    seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "G", "AC"]
    out = model.predict(seqs)
    assert len(out) == 3
    for s, r in zip(seqs, out):
        n = len(s)
        d, v = r["distance"], r["variance"]
        assert d.shape == (n, n) and d.dtype == np.float32
        assert np.array_equal(d, d.T) and np.all(np.diag(d) == 0) and np.all(d >= 0) and np.isfinite(d).all()
        assert v is not None and v.shape == (n, n) and v.dtype == np.float32 and np.all(v >= 0)
    with pytest.raises(InputError):
        model.predict([""])


def test_predict_window_uses_the_full_chain_length(prior):
    model = DistanceModel.build(("qwen", {"preset": "tiny"}), ("regression", {"pair_dim": 8, "n_blocks": 1}),
                                ("log1p", {"scale": 5.0}), prior=prior, crop=64).eval()
    seq = "MKTAYIAKQRQISFVKSHFSRQ"
    alone = model.predict([seq])[0]["distance"]
    window = model.predict([seq], lengths=[300])[0]["distance"]
    assert window.shape == alone.shape
    assert not np.array_equal(window, alone)  # another length bucket of the separation prior
    np.testing.assert_array_equal(model.predict([seq], lengths=[len(seq)])[0]["distance"], alone)


def test_predict_runs_without_grad(model):
    out = model.forward(["MKTAY"])
    assert out["distance"].requires_grad  # training path keeps the graph
    seen = []
    handle = model.head.register_forward_hook(lambda m, i, o: seen.append(torch.is_grad_enabled()))
    model.predict(["MKTAY"])
    handle.remove()
    assert seen == [False]


def test_save_load_round_trip(model, tmp_path):
    seq = "MKTAYIAKQRQISFVKSHFSRQ"
    model.save(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["backbone.safetensors", "config.json", "head.safetensors", "prior.json"]
    text = (tmp_path / "m" / "config.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    again = DistanceModel.load(tmp_path / "m")
    assert not again.training
    np.testing.assert_array_equal(again.predict([seq])[0]["distance"], model.predict([seq])[0]["distance"])
    model.save(tmp_path / "h", dtype=torch.float16)
    half = DistanceModel.load(tmp_path / "h")
    assert next(half.parameters()).dtype == torch.float32
    np.testing.assert_allclose(half.predict([seq])[0]["distance"], model.predict([seq])[0]["distance"], atol=0.05)


def test_missing_plugin_names_the_distribution(model, tmp_path):
    model.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["components"]["distance_head"].update(name="fancy-head", distribution="distfold-fancy")
    cfg["from_the_future"] = 1
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DistfoldError, match="pip install distfold-fancy"):
        DistanceModel.load(tmp_path / "m")


def test_load_errors_are_input_errors(tmp_path, capsys):
    with pytest.raises(InputError, match="not a distfold model"):
        DistanceModel.load(tmp_path)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(InputError, match="invalid JSON"):
        DistanceModel.load(tmp_path)


def test_unknown_config_keys_warn(model, tmp_path, capsys):
    model.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["from_the_future"] = 1
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    DistanceModel.load(tmp_path / "m")
    assert "from_the_future" in capsys.readouterr().err


def test_default_model_path_is_package_data():
    path = default_model_path()
    assert path.name == "default_model" and path.parent.name in ("core", "distfold")


def test_shipped_default_model_loads_and_predicts():
    path = default_model_path()
    config = json.loads((path / "config.json").read_text())
    assert config["components"]["backbone"]["params"]["base_model"] is None  # from scratch, self-contained
    files = {p.name for p in path.iterdir()}
    assert {"config.json", "backbone.safetensors", "head.safetensors", "DATA_CARD.md"} <= files
    assert sum(p.stat().st_size for p in path.iterdir()) <= 25 * 2**20
    model = DistanceModel.load(path)
    seq = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWSTPSELGHAGLNGDILVWNPVLEDAFELSSMGIRVDADTLKHQLALTGDEDRLELEWHQALLRGEMPQTIGGGIGQSRLTMLLLQLPHIGQVQCGVWPAACRESVPALLAK"
    d = model.predict([seq])[0]["distance"]
    assert np.isfinite(d).all() and np.all(np.diag(d) == 0)
    assert 3.3 < float(np.median(np.diagonal(d, 1))) < 4.3  # consecutive C-alpha atoms, about 3.8 A


# -- issue 16, point 6: loading edges -----------------------------------------------------------------

def _saved(model, tmp_path):
    model.save(tmp_path / "m")
    return tmp_path / "m"


def _edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


def test_a_missing_head_file_is_named(model, tmp_path):
    """Before: "incomplete model directory (None missing)"."""
    path = _saved(model, tmp_path)
    (path / "head.safetensors").unlink()
    with pytest.raises(InputError) as err:
        DistanceModel.load(path)
    assert str(err.value) == f"{path}: incomplete model directory (head.safetensors missing)"


def test_a_truncated_weights_file_is_a_one_line_input_error(model, tmp_path):
    """Before: safetensors' SafetensorError, which the CLI shows as a traceback."""
    path = _saved(model, tmp_path)
    data = (path / "backbone.safetensors").read_bytes()
    (path / "backbone.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        DistanceModel.load(path)
    assert str(err.value).startswith(f"{path / 'backbone.safetensors'}: not a readable safetensors file (")
    assert "damaged or cut short" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("where", ["../outside/prior.json", "{outside}/prior.json", "sub/../../outside/prior.json",
                                   "~/prior.json", ""])
def test_the_prior_path_cannot_leave_the_model_folder(model, tmp_path, where):
    """Before: config.json's "prior" was opened wherever it pointed (../../../../etc/passwd)."""
    path = _saved(model, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "prior.json").write_text((path / "prior.json").read_text())  # a valid prior, in the wrong place
    _edit_config(path, prior=where.format(outside=outside) or 7)
    with pytest.raises(InputError, match="must name a file inside the model directory"):
        DistanceModel.load(path)


def test_a_prior_in_a_subfolder_of_the_model_is_fine(model, tmp_path):
    path = _saved(model, tmp_path)
    (path / "extra").mkdir()
    (path / "prior.json").rename(path / "extra" / "prior.json")
    _edit_config(path, prior="extra/prior.json")
    assert DistanceModel.load(path).prior is not None


GHOST_NORMALISER = ("from distfold import ComponentSpec, hookimpl\n"
                    "@hookimpl\n"
                    "def distfold_normalisers():\n"
                    "    return [ComponentSpec('ghost', 'distfold_ghost_missing_module:Ghost', 'absent')]\n")


def test_a_component_whose_module_is_missing_names_its_plugin(prior, tmp_path, fake_plugin):
    from conftest import run_distfold

    model = DistanceModel.build(("qwen", {"preset": "tiny"}), ("regression", {"pair_dim": 8, "n_blocks": 1}),
                                ("log1p", {"scale": 5.0}), prior=prior, crop=64)
    path = _saved(model, tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["components"]["normaliser"].update(name="ghost", distribution="distfold-ghost")
    (path / "config.json").write_text(json.dumps(cfg))
    site = fake_plugin("distfold-ghost", "ghost", "distfold_ghost_hooks", GHOST_NORMALISER)
    res = run_distfold("predict", "MKTAYIAKQR", "-o", str(tmp_path / "o"), "--model", str(path), pythonpath=site)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == ["Error: normaliser 'ghost' (plugin 'ghost', distribution distfold-ghost): cannot load "
                      "distfold_ghost_missing_module:Ghost: ModuleNotFoundError: No module named "
                      "'distfold_ghost_missing_module'"], res.stderr


# -- secondary-structure read-out and shrinkage toward the prior (issue 17) -----------------------

@pytest.fixture(scope="module")
def ss_model(prior):
    m = DistanceModel.build(("qwen", {"preset": "tiny"}), ("regression", {"pair_dim": 8, "n_blocks": 1,
                                                                          "ss_weight": 0.5, "ss_kernel": 5}),
                            ("log1p", {"scale": 5.0}), prior=prior, crop=64)
    return m.eval()


def test_ss_probs_are_rows_of_three_summing_to_one(ss_model, model, tmp_path):
    seq = "MKTAYIAKQRQISFVKSHFSRQ"
    r = ss_model.predict([seq, "G"])
    for s, out in zip([seq, "G"], r):
        p = out["ss_probs"]
        assert p.shape == (len(s), 3) and p.dtype == np.float32
        assert np.all(p >= 0) and np.allclose(p.sum(1), 1.0, atol=1e-6)
    if model.config["components"]["distance_head"]["params"].get("ss_weight", 0) == 0:
        assert "ss_probs" not in model.predict([seq])[0]  # a model without the read-out omits the key
    ss_model.save(tmp_path / "m")
    again = DistanceModel.load(tmp_path / "m")
    np.testing.assert_array_equal(again.predict([seq])[0]["ss_probs"], r[0]["ss_probs"])


def test_ss_loss_masks_unlabelled_residues(ss_model):
    out = ss_model.forward(["MKTAYIAKQR"])
    none = torch.full((1, 10), -1, dtype=torch.long)
    assert float(ss_model.head.ss_loss(out, none).detach()) == 0.0
    some = none.clone()
    some[0, :4] = torch.tensor([0, 1, 2, 0])
    expected = 0.5 * torch.nn.functional.cross_entropy(out["ss_logits"][0, :4], some[0, :4])
    assert torch.allclose(ss_model.head.ss_loss(out, some), expected)


def test_shrinkage_moves_the_correction_toward_the_prior(ss_model, prior):
    seq = "MKTAYIAKQRQISFVKSHFSRQAWLLKEG"
    n = len(seq)
    bands = [[1, 5], [6, None]]
    head = ss_model.predict([seq])[0]
    try:
        ss_model.config["shrinkage"] = {"bands": bands, "factors": [1.0, 1.0]}
        same = ss_model.predict([seq])[0]
        ss_model.config["shrinkage"] = {"bands": bands, "factors": [1.0, 0.0]}
        half = ss_model.predict([seq])[0]
        unshrunk = ss_model.predict([seq], shrink=False)[0]
    finally:
        ss_model.config.pop("shrinkage")
    np.testing.assert_allclose(same["distance"], head["distance"], rtol=1e-6)
    np.testing.assert_array_equal(unshrunk["distance"], head["distance"])
    sep = np.abs(np.arange(n)[:, None] - np.arange(n)[None])
    far = sep >= 6
    np.testing.assert_allclose(half["distance"][far], prior.matrix(n)[far], rtol=1e-4)  # factor 0: the prior
    near = (sep >= 1) & (sep <= 5)
    np.testing.assert_allclose(half["distance"][near], head["distance"][near], rtol=1e-6)
    # the variance follows the delta method at the new point: log1p's slope is proportional to 1 + d
    ratio = ((1 + half["distance"]) / (1 + head["distance"])) ** 2
    np.testing.assert_allclose(half["variance"][far], (head["variance"] * ratio)[far], rtol=1e-3)
    np.testing.assert_array_equal(half["ss_probs"], head["ss_probs"])


@pytest.mark.parametrize("bad", [{"bands": [[1, 5]], "factors": [0.5, 0.5]}, {"bands": [[1, None]], "factors": [7]}])
def test_a_bad_shrinkage_is_a_one_line_error_naming_the_config(ss_model, tmp_path, bad):
    ss_model.save(tmp_path / "m")
    _edit_config(tmp_path / "m", shrinkage=bad)
    with pytest.raises(InputError, match="config.json: shrinkage"):
        DistanceModel.load(tmp_path / "m")
