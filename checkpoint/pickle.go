package checkpoint

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file is a small pickle virtual machine. It never executes anything: GLOBAL only names a callable, and
// REDUCE/NEWOBJ/BUILD construct values for a short allowlist of callables (see reduce) and opaque placeholders
// for everything else. Python values are represented as:
//
//	None -> nil, bool -> bool, int -> int64 or *big.Int, float -> float64, str -> string, bytes -> pyBytes,
//	tuple -> *pyTuple, list -> *pyList, dict/OrderedDict -> *pyDict, set/frozenset -> *pySet,
//	a global name -> pyGlobal, a torch storage -> *storageRef, a tensor -> *tensorRef, anything else -> *pyObject.
//
// All these are comparable, so any of them can be a dict key without a runtime panic.

type (
	pyBytes  string
	pyTuple  struct{ items []any }
	pyList   struct{ items []any }
	pySet    struct{ items []any }
	pyGlobal struct{ module, name string }
	pyDict   struct {
		keys, vals []any
		index      map[any]int
	}
	// pyObject stands for an instance of a class the VM does not know.
	pyObject struct {
		class any // usually a pyGlobal
		args  any
		state any
	}
)

func (g pyGlobal) String() string { return g.module + "." + g.name }

func newDict() *pyDict { return &pyDict{index: map[any]int{}} }

func (d *pyDict) set(k, v any) {
	if i, ok := d.index[k]; ok {
		d.vals[i] = v
		return
	}
	d.index[k] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
}

func (d *pyDict) get(k string) (any, bool) {
	i, ok := d.index[k]
	if !ok {
		return nil, false
	}
	return d.vals[i], true
}

// storageRef is a torch storage named by a persistent id ('storage', storage_type, key, location, numel).
type storageRef struct {
	dtype    DType // "" when the storage type is not supported
	typeName string
	key      string
	numel    int64
}

// tensorRef is the result of torch._utils._rebuild_tensor_v2 and friends.
type tensorRef struct {
	storage *storageRef
	offset  int64
	size    []int64
	stride  []int64
}

// unsupportedTensor is a tensor rebuilt by a torch function other than the supported ones.
type unsupportedTensor struct{ builder pyGlobal }

// pickleVM unpickles one pickle stream.
type pickleVM struct {
	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[uint64]any
	// persistentLoad resolves BINPERSID/PERSID ids.
	persistentLoad func(pid any) (any, error)
}

var errPickleTruncated = errors.New("pickle data ends early")

func (vm *pickleVM) read(n int) ([]byte, error) {
	if n < 0 || n > len(vm.data)-vm.pos {
		return nil, errPickleTruncated
	}
	b := vm.data[vm.pos : vm.pos+n]
	vm.pos += n
	return b, nil
}

func (vm *pickleVM) readByte() (byte, error) {
	if vm.pos >= len(vm.data) {
		return 0, errPickleTruncated
	}
	b := vm.data[vm.pos]
	vm.pos++
	return b, nil
}

func (vm *pickleVM) readUint(n int) (uint64, error) {
	b, err := vm.read(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

// readLen reads an n-byte little-endian length and the bytes it announces.
func (vm *pickleVM) readCounted(n int) ([]byte, error) {
	l, err := vm.readUint(n)
	if err != nil {
		return nil, err
	}
	if l > uint64(len(vm.data)-vm.pos) {
		return nil, errPickleTruncated
	}
	return vm.read(int(l))
}

func (vm *pickleVM) readLine() (string, error) {
	for i := vm.pos; i < len(vm.data); i++ {
		if vm.data[i] == '\n' {
			s := string(vm.data[vm.pos:i])
			vm.pos = i + 1
			return s, nil
		}
	}
	return "", errPickleTruncated
}

func (vm *pickleVM) push(v any) { vm.stack = append(vm.stack, v) }

func (vm *pickleVM) pop() (any, error) {
	base := 0
	if len(vm.marks) > 0 {
		base = vm.marks[len(vm.marks)-1]
	}
	if len(vm.stack) <= base {
		return nil, errors.New("pickle stack underflow")
	}
	v := vm.stack[len(vm.stack)-1]
	vm.stack = vm.stack[:len(vm.stack)-1]
	return v, nil
}

func (vm *pickleVM) top() (any, error) {
	base := 0
	if len(vm.marks) > 0 {
		base = vm.marks[len(vm.marks)-1]
	}
	if len(vm.stack) <= base {
		return nil, errors.New("pickle stack underflow")
	}
	return vm.stack[len(vm.stack)-1], nil
}

// popMark returns the items pushed since the last MARK and removes them and the mark.
func (vm *pickleVM) popMark() ([]any, error) {
	if len(vm.marks) == 0 {
		return nil, errors.New("pickle MARK missing")
	}
	m := vm.marks[len(vm.marks)-1]
	vm.marks = vm.marks[:len(vm.marks)-1]
	items := append([]any(nil), vm.stack[m:]...)
	vm.stack = vm.stack[:m]
	return items, nil
}

func (vm *pickleVM) memoGet(i uint64) error {
	v, ok := vm.memo[i]
	if !ok {
		return fmt.Errorf("pickle memo entry %d is missing", i)
	}
	vm.push(v)
	return nil
}

func (vm *pickleVM) memoPut(i uint64) error {
	v, err := vm.top()
	if err != nil {
		return err
	}
	vm.memo[i] = v
	return nil
}

// decodeLong decodes a little-endian two's-complement integer.
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		shift := uint(64 - 8*len(b))
		return int64(v<<shift) >> shift
	}
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	v := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if v.IsInt64() {
		return v.Int64()
	}
	return v
}

func parseIntText(s string) (any, error) {
	s = strings.TrimSuffix(s, "L")
	if len(s) > 4300 { // CPython's own limit on decimal integer strings
		return nil, fmt.Errorf("pickle: integer literal of %d digits", len(s))
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, nil
	}
	v, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return nil, fmt.Errorf("pickle: bad integer %q", s)
	}
	return v, nil
}

// unquotePy decodes a protocol-0 STRING argument (a Python repr); it tolerates what it cannot decode.
func unquotePy(s string) string {
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		inner := s[1 : len(s)-1]
		if u, err := strconv.Unquote(`"` + strings.ReplaceAll(inner, `"`, `\"`) + `"`); err == nil {
			return u
		}
		return inner
	}
	return s
}

// decodeRawUnicodeEscape decodes Python's raw-unicode-escape codec: bytes are Latin-1 code points, except
// \uXXXX and \UXXXXXXXX escapes.
func decodeRawUnicodeEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') {
			n := 4
			if s[i+1] == 'U' {
				n = 8
			}
			if i+2+n <= len(s) {
				if v, err := strconv.ParseUint(s[i+2:i+2+n], 16, 32); err == nil && utf8.ValidRune(rune(v)) {
					b.WriteRune(rune(v))
					i += 1 + n
					continue
				}
			}
		}
		b.WriteRune(rune(c))
	}
	return b.String()
}

// unpickle runs the machine until STOP and returns the result.
func (vm *pickleVM) unpickle() (any, error) {
	if vm.memo == nil {
		vm.memo = map[uint64]any{}
	}
	for {
		op, err := vm.readByte()
		if err != nil {
			return nil, errors.New("pickle data ends without STOP")
		}
		if err := vm.step(op); err != nil {
			if err == errStop {
				if len(vm.stack) == 0 {
					return nil, errors.New("pickle STOP with an empty stack")
				}
				return vm.stack[len(vm.stack)-1], nil
			}
			return nil, fmt.Errorf("%w (opcode %#02x at byte %d)", err, op, vm.pos-1)
		}
	}
}

var errStop = errors.New("stop")

func (vm *pickleVM) step(op byte) error {
	switch op {
	case 0x80: // PROTO
		p, err := vm.readByte()
		if err != nil {
			return err
		}
		if p > 5 {
			return fmt.Errorf("unsupported pickle protocol %d", p)
		}
	case 0x95: // FRAME
		if _, err := vm.read(8); err != nil {
			return err
		}
	case '.': // STOP
		return errStop
	case '(': // MARK
		vm.marks = append(vm.marks, len(vm.stack))
	case '0': // POP
		if len(vm.marks) > 0 && vm.marks[len(vm.marks)-1] == len(vm.stack) {
			vm.marks = vm.marks[:len(vm.marks)-1]
			return nil
		}
		_, err := vm.pop()
		return err
	case '1': // POP_MARK
		_, err := vm.popMark()
		return err
	case '2': // DUP
		v, err := vm.top()
		if err != nil {
			return err
		}
		vm.push(v)

	// Constants and numbers.
	case 'N':
		vm.push(nil)
	case 0x88:
		vm.push(true)
	case 0x89:
		vm.push(false)
	case 'J': // BININT
		v, err := vm.readUint(4)
		if err != nil {
			return err
		}
		vm.push(int64(int32(uint32(v))))
	case 'K': // BININT1
		v, err := vm.readUint(1)
		if err != nil {
			return err
		}
		vm.push(int64(v))
	case 'M': // BININT2
		v, err := vm.readUint(2)
		if err != nil {
			return err
		}
		vm.push(int64(v))
	case 0x8a: // LONG1
		b, err := vm.readCounted(1)
		if err != nil {
			return err
		}
		vm.push(decodeLong(b))
	case 0x8b: // LONG4
		n, err := vm.readUint(4)
		if err != nil {
			return err
		}
		if int32(uint32(n)) < 0 {
			return errors.New("LONG4 with a negative length")
		}
		b, err := vm.read(int(n))
		if err != nil {
			return err
		}
		vm.push(decodeLong(b))
	case 'G': // BINFLOAT (big-endian)
		b, err := vm.read(8)
		if err != nil {
			return err
		}
		var v uint64
		for _, c := range b {
			v = v<<8 | uint64(c)
		}
		vm.push(math.Float64frombits(v))
	case 'I': // INT (text; "01"/"00" are True/False)
		s, err := vm.readLine()
		if err != nil {
			return err
		}
		switch s {
		case "01":
			vm.push(true)
		case "00":
			vm.push(false)
		default:
			v, err := parseIntText(s)
			if err != nil {
				return err
			}
			vm.push(v)
		}
	case 'L': // LONG (text)
		s, err := vm.readLine()
		if err != nil {
			return err
		}
		v, err := parseIntText(s)
		if err != nil {
			return err
		}
		vm.push(v)
	case 'F': // FLOAT (text)
		s, err := vm.readLine()
		if err != nil {
			return err
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("pickle: bad float %q", s)
		}
		vm.push(v)

	// Strings and bytes.
	case 'X': // BINUNICODE
		b, err := vm.readCounted(4)
		if err != nil {
			return err
		}
		vm.push(string(b))
	case 0x8c: // SHORT_BINUNICODE
		b, err := vm.readCounted(1)
		if err != nil {
			return err
		}
		vm.push(string(b))
	case 0x8d: // BINUNICODE8
		b, err := vm.readCounted(8)
		if err != nil {
			return err
		}
		vm.push(string(b))
	case 'V': // UNICODE (raw-unicode-escape, text)
		s, err := vm.readLine()
		if err != nil {
			return err
		}
		vm.push(decodeRawUnicodeEscape(s))
	case 'S': // STRING (text repr)
		s, err := vm.readLine()
		if err != nil {
			return err
		}
		vm.push(unquotePy(s))
	case 'T': // BINSTRING
		b, err := vm.readCounted(4)
		if err != nil {
			return err
		}
		vm.push(string(b))
	case 'U': // SHORT_BINSTRING
		b, err := vm.readCounted(1)
		if err != nil {
			return err
		}
		vm.push(string(b))
	case 'B': // BINBYTES
		b, err := vm.readCounted(4)
		if err != nil {
			return err
		}
		vm.push(pyBytes(b))
	case 'C': // SHORT_BINBYTES
		b, err := vm.readCounted(1)
		if err != nil {
			return err
		}
		vm.push(pyBytes(b))
	case 0x8e, 0x96: // BINBYTES8, BYTEARRAY8
		b, err := vm.readCounted(8)
		if err != nil {
			return err
		}
		vm.push(pyBytes(b))

	// Containers.
	case '}':
		vm.push(newDict())
	case ']':
		vm.push(&pyList{})
	case ')':
		vm.push(&pyTuple{})
	case 0x8f: // EMPTY_SET
		vm.push(&pySet{})
	case 'd': // DICT
		items, err := vm.popMark()
		if err != nil {
			return err
		}
		if len(items)%2 != 0 {
			return errors.New("DICT with an odd number of items")
		}
		d := newDict()
		for i := 0; i < len(items); i += 2 {
			d.set(items[i], items[i+1])
		}
		vm.push(d)
	case 'l': // LIST
		items, err := vm.popMark()
		if err != nil {
			return err
		}
		vm.push(&pyList{items: items})
	case 't': // TUPLE
		items, err := vm.popMark()
		if err != nil {
			return err
		}
		vm.push(&pyTuple{items: items})
	case 0x85, 0x86, 0x87: // TUPLE1, TUPLE2, TUPLE3
		n := int(op - 0x84)
		items := make([]any, n)
		for i := n - 1; i >= 0; i-- {
			v, err := vm.pop()
			if err != nil {
				return err
			}
			items[i] = v
		}
		vm.push(&pyTuple{items: items})
	case 0x91: // FROZENSET
		items, err := vm.popMark()
		if err != nil {
			return err
		}
		vm.push(&pySet{items: items})
	case 'a': // APPEND
		v, err := vm.pop()
		if err != nil {
			return err
		}
		return vm.appendTo([]any{v})
	case 'e': // APPENDS
		items, err := vm.popMark()
		if err != nil {
			return err
		}
		return vm.appendTo(items)
	case 0x90: // ADDITEMS
		items, err := vm.popMark()
		if err != nil {
			return err
		}
		t, err := vm.top()
		if err != nil {
			return err
		}
		s, ok := t.(*pySet)
		if !ok {
			return errors.New("ADDITEMS on something that is not a set")
		}
		s.items = append(s.items, items...)
	case 's': // SETITEM
		v, err := vm.pop()
		if err != nil {
			return err
		}
		k, err := vm.pop()
		if err != nil {
			return err
		}
		return vm.setItems([]any{k, v})
	case 'u': // SETITEMS
		items, err := vm.popMark()
		if err != nil {
			return err
		}
		if len(items)%2 != 0 {
			return errors.New("SETITEMS with an odd number of items")
		}
		return vm.setItems(items)

	// Memo.
	case 'q': // BINPUT
		i, err := vm.readUint(1)
		if err != nil {
			return err
		}
		return vm.memoPut(i)
	case 'r': // LONG_BINPUT
		i, err := vm.readUint(4)
		if err != nil {
			return err
		}
		return vm.memoPut(i)
	case 'p': // PUT
		s, err := vm.readLine()
		if err != nil {
			return err
		}
		i, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("pickle: bad PUT index %q", s)
		}
		return vm.memoPut(i)
	case 0x94: // MEMOIZE
		return vm.memoPut(uint64(len(vm.memo)))
	case 'h': // BINGET
		i, err := vm.readUint(1)
		if err != nil {
			return err
		}
		return vm.memoGet(i)
	case 'j': // LONG_BINGET
		i, err := vm.readUint(4)
		if err != nil {
			return err
		}
		return vm.memoGet(i)
	case 'g': // GET
		s, err := vm.readLine()
		if err != nil {
			return err
		}
		i, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("pickle: bad GET index %q", s)
		}
		return vm.memoGet(i)

	// Objects.
	case 'c': // GLOBAL
		mod, err := vm.readLine()
		if err != nil {
			return err
		}
		name, err := vm.readLine()
		if err != nil {
			return err
		}
		vm.push(pyGlobal{mod, name})
	case 0x93: // STACK_GLOBAL
		name, err := vm.pop()
		if err != nil {
			return err
		}
		mod, err := vm.pop()
		if err != nil {
			return err
		}
		ms, ok1 := mod.(string)
		ns, ok2 := name.(string)
		if !ok1 || !ok2 {
			return errors.New("STACK_GLOBAL needs two strings")
		}
		vm.push(pyGlobal{ms, ns})
	case 'R': // REDUCE
		args, err := vm.pop()
		if err != nil {
			return err
		}
		fn, err := vm.pop()
		if err != nil {
			return err
		}
		v, err := reduce(fn, args, 0)
		if err != nil {
			return err
		}
		vm.push(v)
	case 0x81: // NEWOBJ
		args, err := vm.pop()
		if err != nil {
			return err
		}
		cls, err := vm.pop()
		if err != nil {
			return err
		}
		vm.push(newObject(cls, args))
	case 0x92: // NEWOBJ_EX
		if _, err := vm.pop(); err != nil { // kwargs
			return err
		}
		args, err := vm.pop()
		if err != nil {
			return err
		}
		cls, err := vm.pop()
		if err != nil {
			return err
		}
		vm.push(newObject(cls, args))
	case 'i': // INST
		mod, err := vm.readLine()
		if err != nil {
			return err
		}
		name, err := vm.readLine()
		if err != nil {
			return err
		}
		args, err := vm.popMark()
		if err != nil {
			return err
		}
		vm.push(newObject(pyGlobal{mod, name}, &pyTuple{items: args}))
	case 'o': // OBJ
		items, err := vm.popMark()
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return errors.New("OBJ without a class")
		}
		vm.push(newObject(items[0], &pyTuple{items: items[1:]}))
	case 'b': // BUILD
		state, err := vm.pop()
		if err != nil {
			return err
		}
		t, err := vm.top()
		if err != nil {
			return err
		}
		if o, ok := t.(*pyObject); ok {
			o.state = state
		}
		// BUILD on a dict (an OrderedDict's _metadata), tensor, ... carries nothing we need.
	case 'Q': // BINPERSID
		pid, err := vm.pop()
		if err != nil {
			return err
		}
		return vm.persist(pid)
	case 'P': // PERSID
		s, err := vm.readLine()
		if err != nil {
			return err
		}
		return vm.persist(s)
	case 0x82, 0x83, 0x84:
		return errors.New("pickle extension registry codes (EXT1/2/4) are not supported")
	case 0x97, 0x98:
		return errors.New("out-of-band pickle buffers are not supported")
	default:
		return fmt.Errorf("unknown pickle opcode %#02x", op)
	}
	return nil
}

func (vm *pickleVM) persist(pid any) error {
	if vm.persistentLoad == nil {
		return errors.New("persistent id without a loader")
	}
	v, err := vm.persistentLoad(pid)
	if err != nil {
		return err
	}
	vm.push(v)
	return nil
}

func (vm *pickleVM) appendTo(items []any) error {
	t, err := vm.top()
	if err != nil {
		return err
	}
	switch l := t.(type) {
	case *pyList:
		l.items = append(l.items, items...)
	case *pyObject: // e.g. a list subclass; its items are not needed
	default:
		return fmt.Errorf("APPEND to a %s", pyTypeName(t))
	}
	return nil
}

func (vm *pickleVM) setItems(items []any) error {
	t, err := vm.top()
	if err != nil {
		return err
	}
	switch d := t.(type) {
	case *pyDict:
		for i := 0; i+1 < len(items); i += 2 {
			d.set(items[i], items[i+1])
		}
	case *pyObject: // e.g. a dict subclass; its items are not needed
	default:
		return fmt.Errorf("SETITEM on a %s", pyTypeName(t))
	}
	return nil
}

func pyTypeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case pyBytes:
		return "bytes"
	case *pyTuple:
		return "tuple"
	case *pyList:
		return "list"
	case *pyDict:
		return "dict"
	case *pySet:
		return "set"
	case pyGlobal:
		return "global " + v.String()
	case *storageRef:
		return "storage"
	case *tensorRef:
		return "tensor"
	case *unsupportedTensor:
		return "tensor built by " + v.builder.String()
	case *pyObject:
		if g, ok := v.class.(pyGlobal); ok {
			return g.String() + " object"
		}
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func newObject(cls, args any) any {
	if g, ok := cls.(pyGlobal); ok {
		switch g.String() {
		case "collections.OrderedDict", "builtins.dict", "__builtin__.dict", "collections.defaultdict":
			return newDict()
		case "builtins.list", "__builtin__.list":
			return &pyList{}
		}
	}
	return &pyObject{class: cls, args: args}
}

func tupleItems(v any) ([]any, bool) {
	switch t := v.(type) {
	case *pyTuple:
		return t.items, true
	case *pyList:
		return t.items, true
	}
	return nil, false
}

// reduce applies REDUCE for the allowlisted callables and returns an opaque object for anything else.
func reduce(fn, args any, depth int) (any, error) {
	g, ok := fn.(pyGlobal)
	if !ok {
		return &pyObject{class: fn, args: args}, nil
	}
	a, ok := tupleItems(args)
	if !ok {
		return &pyObject{class: fn, args: args}, nil
	}
	switch g.String() {
	case "collections.OrderedDict", "builtins.dict", "__builtin__.dict", "collections.defaultdict":
		d := newDict()
		if g.name != "defaultdict" && len(a) == 1 {
			if pairs, ok := tupleItems(a[0]); ok {
				for _, p := range pairs {
					if kv, ok := tupleItems(p); ok && len(kv) == 2 {
						d.set(kv[0], kv[1])
					}
				}
			}
		}
		return d, nil
	case "builtins.set", "__builtin__.set", "builtins.frozenset", "__builtin__.frozenset":
		s := &pySet{}
		if len(a) == 1 {
			s.items, _ = tupleItems(a[0])
		}
		return s, nil
	case "torch.Size", "builtins.tuple", "__builtin__.tuple":
		if len(a) == 1 {
			if items, ok := tupleItems(a[0]); ok {
				return &pyTuple{items: items}, nil
			}
		}
		return &pyTuple{}, nil
	case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
		return rebuildTensor(g, a)
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		if len(a) >= 1 {
			if t, ok := a[0].(*tensorRef); ok {
				return t, nil
			}
		}
		return nil, fmt.Errorf("%s: expected a tensor as first argument", g)
	case "torch._tensor._rebuild_from_type_v2", "torch._tensor._rebuild_from_type":
		// (func, type, args, state): a tensor subclass; rebuild the plain tensor.
		if len(a) >= 3 {
			inner, ok := tupleItems(a[2])
			if !ok || depth > 4 {
				return nil, fmt.Errorf("%s: malformed arguments", g)
			}
			return reduce(a[0], &pyTuple{items: inner}, depth+1)
		}
		return nil, fmt.Errorf("%s: malformed arguments", g)
	}
	if (g.module == "torch._utils" || g.module == "torch._tensor") && strings.HasPrefix(g.name, "_rebuild") {
		// A tensor of a kind this package cannot read (quantized, sparse, meta, ...): remember it, so that
		// exposing it is an error rather than a silently missing tensor.
		return &unsupportedTensor{builder: g}, nil
	}
	return &pyObject{class: fn, args: args}, nil
}

func asInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func intTuple(v any) ([]int64, bool) {
	items, ok := tupleItems(v)
	if !ok {
		return nil, false
	}
	out := make([]int64, len(items))
	for i, it := range items {
		if out[i], ok = asInt(it); !ok {
			return nil, false
		}
	}
	return out, true
}

// rebuildTensor handles _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
// backward_hooks[, metadata]) and the older _rebuild_tensor(storage, storage_offset, size, stride).
func rebuildTensor(g pyGlobal, a []any) (any, error) {
	if len(a) < 4 {
		return nil, fmt.Errorf("%s: %d arguments, want at least 4", g, len(a))
	}
	st, ok := a[0].(*storageRef)
	if !ok {
		return nil, fmt.Errorf("%s: first argument is a %s, not a storage", g, pyTypeName(a[0]))
	}
	off, ok := asInt(a[1])
	if !ok || off < 0 {
		return nil, fmt.Errorf("%s: bad storage offset", g)
	}
	size, ok1 := intTuple(a[2])
	stride, ok2 := intTuple(a[3])
	if !ok1 || !ok2 || len(size) != len(stride) {
		return nil, fmt.Errorf("%s: size and stride must be integer tuples of equal length", g)
	}
	return &tensorRef{storage: st, offset: off, size: size, stride: stride}, nil
}

// torchStorageDType maps torch storage class names to element types.
var torchStorageDType = map[string]DType{
	"DoubleStorage":   F64,
	"FloatStorage":    F32,
	"HalfStorage":     F16,
	"BFloat16Storage": BF16,
	"LongStorage":     I64,
	"IntStorage":      I32,
	"ShortStorage":    I16,
	"CharStorage":     I8,
	"ByteStorage":     U8,
	"BoolStorage":     BOOL,
	"UntypedStorage":  U8,
}

// storageLoader returns a persistent_load for torch zip checkpoints; storages are shared by key.
func storageLoader() func(pid any) (any, error) {
	byKey := map[string]*storageRef{}
	return func(pid any) (any, error) {
		items, ok := tupleItems(pid)
		if !ok || len(items) < 5 {
			return nil, fmt.Errorf("unsupported persistent id (a %s); expected ('storage', type, key, location, numel)", pyTypeName(pid))
		}
		if tag, _ := items[0].(string); tag != "storage" {
			return nil, fmt.Errorf("unsupported persistent id kind %q", tag)
		}
		key, ok := items[2].(string)
		if !ok {
			return nil, errors.New("persistent id: storage key is not a string")
		}
		numel, ok := asInt(items[4])
		if !ok || numel < 0 {
			return nil, errors.New("persistent id: bad storage size")
		}
		if s, ok := byKey[key]; ok {
			return s, nil
		}
		s := &storageRef{key: key, numel: numel}
		if g, ok := items[1].(pyGlobal); ok && (g.module == "torch" || g.module == "torch.cuda") {
			s.typeName = g.String()
			s.dtype = torchStorageDType[g.name]
		} else {
			s.typeName = pyTypeName(items[1])
		}
		if !utf8.ValidString(key) || strings.ContainsAny(key, "/\\") || key == "" || key == "." || key == ".." {
			return nil, fmt.Errorf("persistent id: invalid storage key %q", key)
		}
		byKey[key] = s
		return s, nil
	}
}
