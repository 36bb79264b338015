"""all-MiniLM-L6-v2 sentence embeddings, served by the Python runtime from a model folder:
model.onnx (exported by build.py) + tokenizer.json + this file.

Pre-processing (tokenizing) runs here, next to the model, so clients send plain text:
V2 `text` BYTES [N] in, `embedding` FP32 [N, 384] out (mean-pooled, L2-normalised, as
sentence-transformers computes them). Serving needs onnxruntime and `tokenizers`, not torch.
"""

from __future__ import annotations

import os

# The Rust tokenizer would start a thread pool for batches; instances are the unit of
# parallelism here, and a template must stay single-threaded to be forked from.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from typing import ClassVar

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length


class MiniLM:
    inputs: ClassVar = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    outputs: ClassVar = [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]

    def load(self, path: str) -> None:
        self.tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.path.join(path, "model.onnx"), options, providers=["CPUExecutionProvider"]
        )

    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in batch["text"]]
        encoded = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        (embedding,) = self.session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
        return {"embedding": embedding}
