"""Food-101's frozen Hugging Face encoders from local folders (the `hf` extra), and the transformer's
input adapters for the built-in encoders (patch embedding of images, embedding of token ids).

The model folders are real: tiny random BERT and ViT models built from `transformers` config
classes and written with `save_pretrained` into the test's data root, then loaded back with
`local_files_only=True`. Nothing reaches a hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cggm_core.batch import pad_collate
from cggm_core.config import resolve
from cggm_core.data import DATASETS
from cggm_core.data import hf_features as hf
from cggm_core.data.base import InputSpec, MultimodalData
from cggm_core.data.files import DataFormatError, ImagePipeline
from cggm_core.data.files.images import load_rgb, preprocess
from cggm_core.models.transformer import build_transformer_net

from .fakedata import write_food101

transformers = pytest.importorskip("transformers", reason="the hf extra (make setup installs it)")

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "sweet", "crispy", "rice", "fish", "honey", "nuts"]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    r = tmp_path / "datasets"
    r.mkdir()
    monkeypatch.setenv("CGGM_DATA_DIR", str(r))
    return r


def save_tiny_models(models: Path) -> tuple[Any, Any, Any]:
    torch.manual_seed(0)
    bert_cfg = transformers.BertConfig(
        vocab_size=len(WORDS),
        hidden_size=12,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=32,
    )
    bert = transformers.BertModel(bert_cfg).eval()
    bert.save_pretrained(models / "bert")
    tokenizer = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(WORDS)})
    tokenizer.save_pretrained(models / "bert")
    vit_cfg = transformers.ViTConfig(
        image_size=16, patch_size=8, hidden_size=12, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    vit = transformers.ViTModel(vit_cfg).eval()
    vit.save_pretrained(models / "vit")
    return bert, tokenizer, vit


HF_JOB = {
    "dataset": "food101",
    "path": "food",
    "image_source": "hf",
    "text_source": "hf",
    "image_encoder": "models/vit",
    "text_encoder": "models/bert",
    "max_tokens": 8,
}


def load(config: dict[str, Any]) -> MultimodalData:
    job = resolve({"method": "joint", **config})
    return DATASETS[job.dataset].load(job.data, 0)


def test_frozen_encoders_run_once_and_their_outputs_are_read_back(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    truth = write_food101(root / "food")
    bert, tokenizer, vit = save_tiny_models(root / "models")
    data = load({**HF_JOB, "validate_on_test": True})
    assert data.inputs["image"] == InputSpec("sequence", (5, 12))  # CLS + (16/8)² patches, ViT width
    assert data.inputs["text"] == InputSpec("sequence", (8, 12))  # padded to max_tokens, as the official
    batch = next(iter(data.test.batches(64)))
    entries = truth.entries["test"]
    with torch.no_grad():
        text = tokenizer(
            [" ".join(e["text_tokens"]) for e in entries],
            padding="max_length",
            max_length=8,
            truncation=True,
            return_tensors="pt",
        )
        assert int(text["input_ids"][0, 1]) != WORDS.index("[UNK]")  # the words are in the vocabulary
        expected_text = bert(**text).last_hidden_state
        pipeline = ImagePipeline(size=16)  # the ViT's own size; no normalisation, as the official
        pixels = np.stack([preprocess(load_rgb(root / "food" / e["img_path"]), pipeline) for e in entries])
        expected_image = vit(pixel_values=torch.from_numpy(pixels)).last_hidden_state
    # The cache is float16: ~1e-3 relative (hf_features docstring).
    torch.testing.assert_close(batch.xs["text"], expected_text, atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(batch.xs["image"], expected_image, atol=5e-3, rtol=5e-3)
    caches = sorted(p.name.split("-")[0] for p in (root / "food" / "cggm_features").iterdir())
    assert caches == ["image", "text"]

    # A second run reads the cache: the encoders never run again.
    def no_encoding(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the cached features were computed again")

    monkeypatch.setattr(hf, "_encode", no_encoding)
    again = load({**HF_JOB, "validate_on_test": True})
    torch.testing.assert_close(next(iter(again.test.batches(64))).xs["text"], batch.xs["text"])


def test_a_changed_model_folder_computes_anew_into_the_chosen_cache(root: Path) -> None:
    write_food101(root / "food")
    save_tiny_models(root / "models")
    load({**HF_JOB, "image_source": "builtin", "image_encoder": "", "feature_cache": "cache"})
    first = {p.name for p in (root / "cache").iterdir()}
    config = json.loads((root / "models" / "bert" / "config.json").read_text())
    config["hidden_dropout_prob"] = 0.0  # any change to a file of the folder
    (root / "models" / "bert" / "config.json").write_text(json.dumps(config))
    data = load({**HF_JOB, "image_source": "builtin", "image_encoder": "", "feature_cache": "cache"})
    assert len({p.name for p in (root / "cache").iterdir()} - first) == 1
    assert data.inputs["image"].kind == "image" and data.inputs["text"].kind == "sequence"
    assert not (root / "food" / "cggm_features").exists()


@pytest.mark.parametrize(
    ("make", "file", "message"),
    [
        (lambda m: None, "models/vit", "no such folder; expected a Hugging Face model folder"),
        (lambda m: (m / "vit").mkdir(parents=True), "models/vit", "no config.json in this folder"),
        (
            lambda m: ((m / "vit").mkdir(parents=True), (m / "vit" / "config.json").write_text("{not json")),
            "models/vit",
            "cannot be read as a Hugging Face model folder",
        ),
    ],
)
def test_a_bad_model_folder_is_named_and_nothing_is_downloaded(root: Path, make: Any, file: str, message: str) -> None:
    write_food101(root / "food")
    make(root / "models")
    with pytest.raises(DataFormatError) as err:
        load({**HF_JOB, "text_source": "builtin", "text_encoder": ""})
    assert err.value.path == str(root.resolve() / file) and message in str(err.value)
    assert "huggingface.co" not in str(err.value)


# ---------------------------------------------------------------- the transformer's input adapters


def tiny_net(kinds: dict[str, str], dims: dict[str, int]) -> Any:
    torch.manual_seed(0)
    return build_transformer_net(
        dims, 3, d_model=8, heads=2, enc_layers=1, fusion_layers=1, aux_layers=1, input_kinds=kinds, patch_size=4
    ).eval()


def test_images_become_one_token_per_patch() -> None:
    net = tiny_net({"image": "image", "text": "tokens"}, {"image": 3, "text": 20})
    images = torch.randn(2, 3, 8, 12)
    h = net.encode_one("image", images, None)
    assert h.shape == (2, 6, 8)  # (8/4) × (12/4) patches, d_model wide
    conv = net.encoders["image"].proj
    assert isinstance(conv, torch.nn.Conv2d) and conv.stride == (4, 4)
    # Patch k (row-major) reads only its own 4 × 4 pixels: changing another patch leaves its token.
    changed = images.clone()
    changed[:, :, 4:8, 8:12] += 1.0  # the last patch
    proj = conv(images).flatten(2).transpose(1, 2)
    proj_changed = conv(changed).flatten(2).transpose(1, 2)
    torch.testing.assert_close(proj[:, :5], proj_changed[:, :5])
    assert not torch.allclose(proj[:, 5], proj_changed[:, 5])


def test_padded_token_ids_give_each_sample_its_own_output() -> None:
    net = tiny_net({"image": "image", "text": "tokens"}, {"image": 3, "text": 20})
    samples = [
        ({"image": np.random.default_rng(i).normal(size=(3, 8, 8)).astype(np.float32), "text": np.array(ids)}, 0)
        for i, ids in enumerate([[5, 6, 7, 8], [9, 3]])
    ]
    batch = pad_collate(samples)
    assert batch.xs["text"].tolist() == [[5, 6, 7, 8], [9, 3, 0, 0]] and batch.xs["text"].dtype == torch.int64
    assert batch.masks["text"].tolist() == [[True] * 4, [True, True, False, False]]
    alone = pad_collate([samples[1]])
    assert alone.masks == {}  # one sample: nothing padded, no mask
    with torch.no_grad():
        together, one = net(batch.xs, batch.masks), net(alone.xs, alone.masks)
    torch.testing.assert_close(together[1], one[0], atol=1e-5, rtol=1e-5)
