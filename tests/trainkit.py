"""Small real datasets and a tiny pretrained-style Qwen2 for the model/training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distfold.data.dataset import write_dataset
from distfold.structure.io import read_chain

DATA = Path(__file__).parent / "data" / "chains"
#: Real chains in tests/data/chains (see its README): uid -> split.
SPLITS = {"c55406f94174e": "train", "c51d4cae83570": "train", "c9fa041c82503": "train",
          "cb98f573e0d35": "val", "c70b106ab8731": "val"}


def make_dataset(path: Path, uids=None, ss: dict[str, str] | None = None) -> Path:
    """A distfold dataset of the test chains (one family each, weight 1); ``ss``: secondary-structure
    label strings (the record field ``ss``) of some of them by id."""
    records, coords = [], []
    for uid in uids or SPLITS:
        chain = read_chain(DATA / f"{uid}.pdb.gz")
        records.append({"id": uid, "sequence": chain.sequence, "source": f"{uid}.pdb.gz", "chain": chain.chain_id,
                        "family": uid, "split": SPLITS[uid], "weight": 1.0, "duplicates": []})
        if ss and uid in ss:
            records[-1]["ss"] = ss[uid]
        coords.append(np.asarray(chain.ca, np.float32))
    return write_dataset(path, records, coords, params={"test": True})


def make_tiny_qwen(path: Path) -> Path:
    """A randomly initialised, pretrained-style Qwen2ForCausalLM with a tokenizer whose
    vocabulary holds single letters, saved like a downloaded model."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Split
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    vocab = {"<|endoftext|>": 0, "<unk>": 1, **{c: i + 2 for i, c in enumerate(letters)}, "AB": 28, "ABC": 29}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Split("", "isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<|endoftext|>",
                                   eos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=0, eos_token_id=0, bos_token_id=None)
    model = Qwen2ForCausalLM(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    fast.save_pretrained(str(path))
    return path


#: The ESM-2 vocabulary, in the order of facebook/esm2_* checkpoints' vocab.txt (33 tokens).
ESM2_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO.-", "<null_1>", "<mask>"]


def make_tiny_esm(path: Path, hidden_size: int = 32, layers: int = 2, heads: int = 4) -> Path:
    """A randomly initialised ESM-2-style EsmForMaskedLM with the real ESM-2 tokenizer
    (vocab.txt written here), saved like a downloaded model (rotary positions,
    token dropout, final layer norm: ESM-2's settings)."""
    import torch
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(ESM2_VOCAB) + "\n")
    tokenizer = EsmTokenizer(str(vocab))
    torch.manual_seed(0)
    config = EsmConfig(vocab_size=len(ESM2_VOCAB), hidden_size=hidden_size, num_hidden_layers=layers,
                       num_attention_heads=heads, intermediate_size=4 * hidden_size, max_position_embeddings=1026,
                       position_embedding_type="rotary", token_dropout=True, emb_layer_norm_before=False,
                       pad_token_id=ESM2_VOCAB.index("<pad>"), mask_token_id=ESM2_VOCAB.index("<mask>"),
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-5)
    EsmForMaskedLM(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path
