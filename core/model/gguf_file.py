"""Read a GGUF file (llama.cpp's single-file format) without touching tensor data it is not asked for.

`read_header` parses the metadata and the tensor table from a memory map advised for random access, so only the
header's pages are read. `read_span` reads one tensor's bytes, prefetching exactly its page range: the operating
system reads the pages of the tensors asked for and not those of their neighbours (with default advice, a page
fault reads several MiB around it). `dequantize` unpacks stored bytes to float32 with the `gguf` package, shaped
as gguf's own GGUFReader hands them to it (the commonest block types with the same arithmetic in torch, faster).
"""

from __future__ import annotations

import hashlib
import math
import mmap
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from potluck.core.model.checkpoint import CheckpointError

_VERSIONS = (2, 3)  # what gguf's GGUFReader reads; v1 files predate 64-bit counts
_DEFAULT_ALIGNMENT = 32
_STRING, _ARRAY = 8, 9
_LENGTH = struct.Struct("<Q")
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


@dataclass(frozen=True)
class TensorSpan:
    """Where one tensor's bytes lie in the file and how they are stored."""

    gguf_name: str
    ggml_type: int  # a gguf.GGMLQuantizationType value
    shape: tuple[int, ...]  # torch order (ggml lists the fastest-moving dimension first)
    start: int  # absolute byte offset in the file
    nbytes: int

    @property
    def end(self) -> int:
        return self.start + self.nbytes


@dataclass(frozen=True)
class GGUFHeader:
    """What a GGUF file says before its tensor data: metadata scalars and strings, and the tensor table."""

    metadata: dict  # scalars and strings only; arrays (the vocabulary, the merges) are left out
    tensors: tuple[TensorSpan, ...]
    data_start: int  # where tensor data begins (the header rounded up to the file's alignment)
    file_size_bytes: int
    digest: str  # sha256 of the header bytes and the file size: the file's revision

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))


class _Cursor:
    """Bounds-checked little-endian reads over a buffer; running off its end means the file is cut short."""

    def __init__(self, buffer, path: Path):
        self.buffer, self.path, self.pos, self.size = buffer, path, 0, len(buffer)

    def skip(self, width: int) -> int:
        """Move past `width` bytes; returns where they start."""
        if self.pos + width > self.size:
            raise CheckpointError(f"{self.path}: the GGUF header is cut off at byte {self.size}: the file is "
                                  f"truncated or damaged; download it again")
        self.pos += width
        return self.pos - width

    def take(self, fmt: str):
        value = struct.unpack_from(fmt, self.buffer, self.skip(struct.calcsize(fmt)))
        return value if len(value) > 1 else value[0]

    def string(self) -> str:
        length = self.take("<Q")
        start = self.skip(length)
        raw = bytes(self.buffer[start : self.pos])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{self.path}: the GGUF header holds a string that is not UTF-8 near byte "
                                  f"{self.pos}: the file is damaged") from None

    def skip_strings(self, count: int) -> None:
        """Move past `count` strings without decoding them (a vocabulary of 50k-200k tokens and its merges: the
        length prefixes are all that is read, in one tight loop)."""
        buffer, pos, last = self.buffer, self.pos, self.size - 8
        length_at = _LENGTH.unpack_from
        for _ in range(count):
            if pos > last:
                break
            pos += 8 + length_at(buffer, pos)[0]
        else:
            if pos <= self.size:
                self.pos = pos
                return
        self.pos = self.size
        self.skip(1)  # past the end: says the file is cut short

    def value(self, value_type: int):
        if value_type in _SCALARS:
            return self.take(_SCALARS[value_type])
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            element_type, count = self.take("<I"), self.take("<Q")
            if element_type in _SCALARS:
                self.skip(count * struct.calcsize(_SCALARS[element_type]))
            elif element_type == _STRING:
                self.skip_strings(count)
            else:
                for _ in range(count):  # walked, not kept: a config needs none of the arrays
                    self.value(element_type)
            return None
        raise CheckpointError(f"{self.path}: the GGUF header holds a value of unknown type {value_type}: "
                              f"the file is damaged or newer than this version of Potluck")


def read_header(path: Path) -> GGUFHeader:
    """Parse a GGUF file's metadata and tensor table, reading only the header's pages."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    with open_mapped(path) as buffer:
        cursor = _Cursor(buffer, path)
        if bytes(buffer[:4]) != b"GGUF":
            raise CheckpointError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
        version = cursor.take("<4xI")
        if version not in _VERSIONS:
            why = "a big-endian file" if version & 0xFFFF == 0 else f"GGUF version {version}"
            raise CheckpointError(f"{path} is {why}, which cannot be read; use a little-endian GGUF v2 or v3 file")
        tensor_count, kv_count = cursor.take("<QQ")
        metadata = {}
        for _ in range(kv_count):
            key = cursor.string()
            metadata[key] = cursor.value(cursor.take("<I"))
        entries = []
        for _ in range(tensor_count):
            name, dims = cursor.string(), cursor.take("<I")
            shape = tuple(reversed([cursor.take("<Q") for _ in range(dims)]))
            entries.append((name, shape, cursor.take("<I"), cursor.take("<Q")))
        alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise CheckpointError(f"{path}: general.alignment {alignment!r} is not a power of two: the file is damaged")
        data_start = -(-cursor.pos // alignment) * alignment
        digest = hashlib.sha256(buffer[: min(data_start, cursor.size)])
        digest.update(cursor.size.to_bytes(8, "little"))
        size = cursor.size

    spans = []
    for name, shape, type_id, offset in entries:
        try:
            block_elements, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
        except (ValueError, KeyError):
            raise CheckpointError(f"{path}: tensor {name} has unknown ggml type {type_id}: the file is damaged or "
                                  f"newer than the installed gguf package") from None
        elements = math.prod(shape)
        if shape and shape[-1] % block_elements:
            raise CheckpointError(f"{path}: tensor {name} has rows of {shape[-1]} values, not a multiple of its "
                                  f"type's block of {block_elements}: the file is damaged")
        spans.append(TensorSpan(name, type_id, shape, data_start + offset, elements // block_elements * block_bytes))
    needed = max((span.end for span in spans), default=data_start)
    if needed > size:
        raise CheckpointError(f"{path} is truncated: its tensors need {needed} bytes but the file has {size}; "
                              f"download it again")
    return GGUFHeader(metadata, tuple(spans), data_start, size, digest.hexdigest())


@contextmanager
def open_mapped(path: Path) -> Iterator[mmap.mmap]:
    """The file as a read-only memory map advised for random access (no read-around into unrequested tensors)."""
    try:
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except ValueError:  # mmap refuses an empty file
        raise CheckpointError(f"{path} is empty: download it again") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e
    try:
        if hasattr(mapped, "madvise"):  # not on Windows
            mapped.madvise(mmap.MADV_RANDOM)
        yield mapped
    finally:
        mapped.close()


def read_span(buffer: mmap.mmap, span: TensorSpan) -> bytes:
    """Exactly this tensor's bytes, prefetched as one range so a large tensor reads at disk speed."""
    if hasattr(buffer, "madvise") and span.nbytes:
        page_start = span.start - span.start % mmap.PAGESIZE
        buffer.madvise(mmap.MADV_WILLNEED, page_start, span.end - page_start)
    return buffer[span.start : span.end]


def dequantize(raw: bytes, span: TensorSpan) -> np.ndarray:
    """A tensor's stored bytes as float32 values of its shape, shaped as gguf's GGUFReader hands them over."""
    from gguf import GGMLQuantizationType
    from gguf import dequantize as gguf_dequantize
    from gguf.quants import quant_shape_to_byte_shape

    qtype = GGMLQuantizationType(span.ggml_type)
    if qtype.name in _FAST_BLOCK_BYTES and span.nbytes == len(raw) and raw:
        return _dequantize_fast(raw, qtype.name, span.shape)
    if qtype == GGMLQuantizationType.F32:
        data = np.frombuffer(raw, dtype=np.float32).reshape(span.shape)
    elif qtype == GGMLQuantizationType.F16:
        data = np.frombuffer(raw, dtype=np.float16).reshape(span.shape)
    else:
        data = np.frombuffer(raw, dtype=np.uint8).reshape(quant_shape_to_byte_shape(span.shape, qtype))
    return gguf_dequantize(data, qtype)


_FAST_BLOCK_BYTES = {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20}  # blocks of 32 values behind a float16 scale


def _dequantize_fast(raw: bytes, qtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """The commonest GGUF block types unpacked in a few whole-tensor torch operations (gguf's numpy code works
    row group by row group on one core: 2-4x slower). The same operations in the same order as gguf's, so the
    values are bit for bit the same (tested against it): Q8_0 q*d; Q4_0 (q-8)*d; Q4_1 q*d+m, low nibbles first."""
    import torch

    blocks = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, _FAST_BLOCK_BYTES[qtype])
    scale = blocks[:, :2].contiguous().view(torch.float16).float()
    if qtype == "Q8_0":
        out = blocks[:, 2:].view(torch.int8).float().mul_(scale)
    else:
        nibbles = blocks[:, -16:]
        out = torch.empty((blocks.shape[0], 32), dtype=torch.float32)
        out[:, :16] = nibbles & 0x0F
        out[:, 16:] = nibbles >> 4
        if qtype == "Q4_0":
            out.sub_(8).mul_(scale)
        else:
            out.mul_(scale).add_(blocks[:, 2:4].contiguous().view(torch.float16).float())
    return out.reshape(shape).numpy()


_DEQUANTIZABLE: dict[int, bool] = {}
_NOT_WEIGHTS = ("I8", "I16", "I32", "I64", "F64")


def can_dequantize(ggml_type: int) -> bool:
    """Whether this is a weight type the installed gguf package can unpack (tried once, on one zero block)."""
    if ggml_type not in _DEQUANTIZABLE:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        qtype = GGMLQuantizationType(ggml_type)
        block_elements, block_bytes = GGML_QUANT_SIZES[qtype]
        try:
            dequantize(bytes(block_bytes), TensorSpan("probe", ggml_type, (1, block_elements), 0, block_bytes))
            _DEQUANTIZABLE[ggml_type] = qtype.name not in _NOT_WEIGHTS
        except (NotImplementedError, ValueError):
            _DEQUANTIZABLE[ggml_type] = False
    return _DEQUANTIZABLE[ggml_type]


def type_name(ggml_type: int) -> str:
    from gguf import GGMLQuantizationType

    return GGMLQuantizationType(ggml_type).name
