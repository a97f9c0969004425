// Package checkpoint reads and writes model weights: safetensors files and PyTorch zip checkpoints (torch.save,
// .pt/.pth/.pth.tar).
//
// # Conventions
//
// Element types are named with safetensors' spelling (DType: "F64", "F32", "F16", "BF16", "I64", "I32", "I16",
// "I8", "U8", "BOOL"; "U16", "U32", "U64" can be read but not written). Shapes are row-major, like PyTorch's
// default layout, and a scalar has an empty shape. Open picks the format from the file's content, not its name.
// A Reader reads each tensor lazily with ReadAt when asked for it and converts it in 1 MiB chunks, so a
// checkpoint is never held in memory twice; Float32 and Float64 convert from every type (F16 and BF16 exactly),
// Int64 from integer and BOOL types only. Readers are safe for concurrent use.
//
// Every error starts with "checkpoint: <path>: " and says what is wrong; malformed input of any kind yields an
// error, never a panic (both readers are fuzzed: FuzzSafetensors, FuzzTorch, FuzzPickle).
//
// # Safetensors
//
// https://github.com/huggingface/safetensors: an unsigned little-endian 64-bit header length N, N bytes of
// UTF-8 JSON, then the data section:
//
//	{"__metadata__": {"key": "value", ...},          // optional, string values only
//	 "name": {"dtype": "F16", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//
// data_offsets are byte offsets into the data section (which starts at 8+N), end exclusive; the data are
// little-endian and row-major. OpenSafetensors checks that N is at most 100 MB and within the file, that the
// JSON parses, that every dtype is known, shapes are non-negative, end-begin equals numel*element size and
// every range lies within the data section (a short file is reported as truncated). WriteSafetensors writes
// the layout of the reference implementation: "__metadata__" first (only if non-empty), tensors sorted by
// name and packed without gaps in that order, header padded with spaces to a multiple of 8 bytes; it writes
// to a temporary file in the same directory, syncs it and renames it over the destination.
//
// # PyTorch zip checkpoints
//
// torch.save (PyTorch >= 1.6) writes a zip archive whose entries share one top-level folder <prefix>/:
//
//	<prefix>/data.pkl      the object structure: a pickle (protocol 2)
//	<prefix>/data/<key>    one entry per storage: its raw bytes, little-endian (stored, not compressed)
//	<prefix>/byteorder     optional, "little" or "big"
//	<prefix>/version       the format version
//
// Inside data.pkl, each storage is a persistent id ('storage', torch.<Type>Storage, key, location, numel), and
// each tensor a call torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
// backward_hooks[, metadata]). The tensor's element (i0, i1, ...) is element storage_offset + Σ ik*stride[k]
// of the storage; views (transposed, sliced, expanded) are materialised in logical row-major order.
//
// data.pkl is interpreted by a small pickle machine that executes nothing (see pickle.go). It implements the
// opcodes of protocols 0 to 5 except the extension registry and out-of-band buffers. Callables are recognised
// only from an allowlist: collections.OrderedDict, builtins/__builtin__ dict, set, frozenset and tuple,
// torch.Size, torch._utils._rebuild_tensor_v2, _rebuild_tensor, _rebuild_parameter,
// _rebuild_parameter_with_state, torch._tensor._rebuild_from_type_v2, and the storage types torch.DoubleStorage,
// FloatStorage, HalfStorage, BFloat16Storage, LongStorage, IntStorage, ShortStorage, CharStorage, ByteStorage,
// BoolStorage and UntypedStorage. Anything else (argparse.Namespace, numpy scalars, optimizer classes, ...)
// becomes an opaque placeholder, so it does not prevent loading the tensors. OpenTorch documents which tensors
// of the unpickled object are exposed and under which names.
//
// Storage entries are read with ReadAt at their offset in the file; entries that a re-packing tool compressed
// are decompressed on demand instead. Pre-1.6 torch.save files (a bare pickle stream or a tar archive) and
// TorchScript archives are rejected with an error that says how to convert them.
package checkpoint
