"""Corpus loading through `datasets`, packing, held-out split and the deterministic sampler."""

from __future__ import annotations

import json

import pytest
import torch

from worker.diffusion import data
from worker.diffusion.hub import HubUnavailableError


@pytest.fixture
def texts(tiny_corpus):
    return tiny_corpus[:20]


def test_local_formats_load_the_same_texts(tmp_path, texts):
    (tmp_path / "a.txt").write_text("\n".join(texts))
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    (tmp_path / "a.csv").write_text("text\n" + "\n".join(f'"{t}"' for t in texts))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": texts}), tmp_path / "a.parquet")
    for name in ("a.txt", "a.jsonl", "a.csv", "a.parquet"):
        assert data.load_texts(str(tmp_path / name)) == texts, name


def test_folder_of_files(tmp_path, texts):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "one.txt").write_text("\n".join(texts[:10]))
    (folder / "two.txt").write_text("\n".join(texts[10:]))
    assert data.load_texts(str(folder)) == texts


def test_bad_sources_name_the_problem(tmp_path):
    with pytest.raises(data.DatasetSourceError, match="does not exist"):
        data.load_texts(str(tmp_path / "missing.txt"))
    with pytest.raises(data.DatasetSourceError, match="unknown built-in"):
        data.load_texts("builtin:nope")
    (tmp_path / "x.txt").write_text("hello")
    (tmp_path / "y.csv").write_text("text\nhello")
    with pytest.raises(data.DatasetSourceError, match="mixes file types"):
        data.load_texts(str(tmp_path))
    (tmp_path / "z.jsonl").write_text('{"body": "hello"}')
    with pytest.raises(data.DatasetSourceError, match="no column 'text'"):
        data.load_texts(str(tmp_path / "z.jsonl"))


def test_hub_dataset_fails_fast_offline(monkeypatch):
    monkeypatch.setattr("worker.diffusion.hub.hub_reachable", lambda timeout_s=3.0: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(HubUnavailableError, match="builtin:kjv"):
        data.load_texts("wikitext", "wikitext-2-raw-v1")


def test_builtin_kjv_is_real_prose():
    texts = data.load_texts("builtin:kjv")
    assert len(texts) == 1189  # chapters
    assert texts[0].startswith("In the beginning God created the heaven and the earth.")
    assert sum(len(t) for t in texts) > 4_000_000


def test_pack_makes_full_blocks(tiny_model, texts):
    _, tok = tiny_model
    blocks = data.pack(texts, tok, 32)
    assert blocks.shape[1] == 32 and blocks.dtype == torch.long
    assert (blocks[:, 0] == tok.cls_token_id).all() and (blocks[:, -1] == tok.sep_token_id).all()
    assert not (blocks == tok.pad_token_id).any()
    # Content is the concatenated token stream, in order.
    stream = tok(texts[0], add_special_tokens=False)["input_ids"]
    assert blocks[0, 1 : 1 + 10].tolist() == stream[:10]


def test_pack_rejects_a_corpus_shorter_than_a_block(tiny_model):
    _, tok = tiny_model
    with pytest.raises(data.DatasetSourceError, match="fewer than one block"):
        data.pack(["hi"], tok, 512)


def test_split_holds_out_whole_documents(texts):
    corpus = data.split_corpus(texts, 0.1, seed=0)
    assert len(corpus.validation) == 2 and len(corpus.train) == 18
    assert not set(corpus.validation) & set(corpus.train)
    assert data.split_corpus(texts, 0.1, seed=0) == corpus


def test_block_sampler_is_a_function_of_seed_and_step():
    a = data.BlockSampler(10, 4, seed=1)
    b = data.BlockSampler(10, 4, seed=1)
    seq_a = [a.batch(k).tolist() for k in range(6)]
    assert [b.batch(k).tolist() for k in reversed(range(6))][::-1] == seq_a
    # Each epoch visits every block once.
    flat = [i for batch in seq_a for i in batch]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert data.BlockSampler(10, 4, seed=2).batch(0).tolist() != seq_a[0]
