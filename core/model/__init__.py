"""Models split into blocks: architecture families, checkpoints and their formats, precisions, tiny test models.

- `families/`           one module per architecture family; `BlockStack`, `ClientParts`, caches, block shapes.
- `checkpoint.py`       a model's files (a folder or a hub id), reading only the tensors asked for.
- `gguf_checkpoint.py`  GGUF files as checkpoints; `gguf_file.py`: their header and memory-mapped tensors.
- `loading.py`          `ModelSpec`, `open_model`, `load_blocks`, `load_client_parts`, dtypes.
- `quant/`              quantized weights (int8, int4) and their CPU kernels.
- `tokenizer.py`        the tokenizer of a checkpoint (folder, hub or GGUF).
- `tiny.py`             random-weight models with a small tokenizer, saved sharded like real ones.
"""
