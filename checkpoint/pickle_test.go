package checkpoint

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"testing"
)

// pythonPickles[p] is pickle.dumps(obj, protocol=p) by CPython 3.11 for
//
//	shared = [1]
//	obj = {"a": [1, -2, 300, 70000, -70000, 2.5, "xé世", b"y", None, True, False, (1, 2), (), (1,), (1, 2, 3),
//	             (1, 2, 3, 4), {3}, frozenset([4]), 2**70, -2**70, 2**63, -1.5e300],
//	       "od": collections.OrderedDict([("k", 1)]), 7: "seven", "s1": shared, "s2": shared}
//
// covering the text opcodes of protocol 0 up to FRAME/MEMOIZE/STACK_GLOBAL of protocols 4 and 5.
var pythonPickles = [6]string{
	"(dp0\x0aVa\x0ap1\x0a(lp2\x0aI1\x0aaI-2\x0aaI300\x0aaI70000\x0aaI-70000\x0aaF2.5\x0aaVx\xe9\x5cu4e16\x0ap3\x0aac_codecs\x0aencode\x0ap4\x0a(Vy\x0ap5\x0aVlatin1\x0ap6\x0atp7\x0aRp8\x0aaNaI01\x0aaI00\x0aa(I1\x0aI2\x0atp9\x0aa(ta(I1\x0atp10\x0aa(I1\x0aI2\x0aI3\x0atp11\x0aa(I1\x0aI2\x0aI3\x0aI4\x0atp12\x0aac__builtin__\x0aset\x0ap13\x0a((lp14\x0aI3\x0aatp15\x0aRp16\x0aac__builtin__\x0afrozenset\x0ap17\x0a((lp18\x0aI4\x0aatp19\x0aRp20\x0aaL1180591620717411303424L\x0aaL-1180591620717411303424L\x0aaL9223372036854775808L\x0aaF-1.5e+300\x0aasVod\x0ap21\x0accollections\x0aOrderedDict\x0ap22\x0a(tRp23\x0aVk\x0ap24\x0aI1\x0assI7\x0aVseven\x0ap25\x0asVs1\x0ap26\x0a(lp27\x0aI1\x0aasVs2\x0ap28\x0ag27\x0as.",
	"}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01Jp\x11\x01\x00J\x90\xee\xfe\xffG@\x04\x00\x00\x00\x00\x00\x00X\x06\x00\x00\x00x\xc3\xa9\xe4\xb8\x96q\x03c_codecs\x0aencode\x0aq\x04(X\x01\x00\x00\x00yq\x05X\x06\x00\x00\x00latin1q\x06tq\x07Rq\x08NI01\x0aI00\x0a(K\x01K\x02tq\x09)(K\x01tq\x0a(K\x01K\x02K\x03tq\x0b(K\x01K\x02K\x03K\x04tq\x0cc__builtin__\x0aset\x0aq\x0d(]q\x0eK\x03atq\x0fRq\x10c__builtin__\x0afrozenset\x0aq\x11(]q\x12K\x04atq\x13Rq\x14L1180591620717411303424L\x0aL-1180591620717411303424L\x0aL9223372036854775808L\x0aG\xfeA\xeb-f\x00X5eX\x02\x00\x00\x00odq\x15ccollections\x0aOrderedDict\x0aq\x16)Rq\x17X\x01\x00\x00\x00kq\x18K\x01sK\x07X\x05\x00\x00\x00sevenq\x19X\x02\x00\x00\x00s1q\x1a]q\x1bK\x01aX\x02\x00\x00\x00s2q\x1ch\x1bu.",
	"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01Jp\x11\x01\x00J\x90\xee\xfe\xffG@\x04\x00\x00\x00\x00\x00\x00X\x06\x00\x00\x00x\xc3\xa9\xe4\xb8\x96q\x03c_codecs\x0aencode\x0aq\x04X\x01\x00\x00\x00yq\x05X\x06\x00\x00\x00latin1q\x06\x86q\x07Rq\x08N\x88\x89K\x01K\x02\x86q\x09)K\x01\x85q\x0aK\x01K\x02K\x03\x87q\x0b(K\x01K\x02K\x03K\x04tq\x0cc__builtin__\x0aset\x0aq\x0d]q\x0eK\x03a\x85q\x0fRq\x10c__builtin__\x0afrozenset\x0aq\x11]q\x12K\x04a\x85q\x13Rq\x14\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\xc0\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00G\xfeA\xeb-f\x00X5eX\x02\x00\x00\x00odq\x15ccollections\x0aOrderedDict\x0aq\x16)Rq\x17X\x01\x00\x00\x00kq\x18K\x01sK\x07X\x05\x00\x00\x00sevenq\x19X\x02\x00\x00\x00s1q\x1a]q\x1bK\x01aX\x02\x00\x00\x00s2q\x1ch\x1bu.",
	"\x80\x03}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01Jp\x11\x01\x00J\x90\xee\xfe\xffG@\x04\x00\x00\x00\x00\x00\x00X\x06\x00\x00\x00x\xc3\xa9\xe4\xb8\x96q\x03C\x01yq\x04N\x88\x89K\x01K\x02\x86q\x05)K\x01\x85q\x06K\x01K\x02K\x03\x87q\x07(K\x01K\x02K\x03K\x04tq\x08cbuiltins\x0aset\x0aq\x09]q\x0aK\x03a\x85q\x0bRq\x0ccbuiltins\x0afrozenset\x0aq\x0d]q\x0eK\x04a\x85q\x0fRq\x10\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\xc0\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00G\xfeA\xeb-f\x00X5eX\x02\x00\x00\x00odq\x11ccollections\x0aOrderedDict\x0aq\x12)Rq\x13X\x01\x00\x00\x00kq\x14K\x01sK\x07X\x05\x00\x00\x00sevenq\x15X\x02\x00\x00\x00s1q\x16]q\x17K\x01aX\x02\x00\x00\x00s2q\x18h\x17u.",
	"\x80\x04\x95\xd5\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(K\x01J\xfe\xff\xff\xffM,\x01Jp\x11\x01\x00J\x90\xee\xfe\xffG@\x04\x00\x00\x00\x00\x00\x00\x8c\x06x\xc3\xa9\xe4\xb8\x96\x94C\x01y\x94N\x88\x89K\x01K\x02\x86\x94)K\x01\x85\x94K\x01K\x02K\x03\x87\x94(K\x01K\x02K\x03K\x04t\x94\x8f\x94(K\x03\x90(K\x04\x91\x94\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\xc0\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00G\xfeA\xeb-f\x00X5e\x8c\x02od\x94\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94\x8c\x01k\x94K\x01sK\x07\x8c\x05seven\x94\x8c\x02s1\x94]\x94K\x01a\x8c\x02s2\x94h\x13u.",
	"\x80\x05\x95\xd5\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(K\x01J\xfe\xff\xff\xffM,\x01Jp\x11\x01\x00J\x90\xee\xfe\xffG@\x04\x00\x00\x00\x00\x00\x00\x8c\x06x\xc3\xa9\xe4\xb8\x96\x94C\x01y\x94N\x88\x89K\x01K\x02\x86\x94)K\x01\x85\x94K\x01K\x02K\x03\x87\x94(K\x01K\x02K\x03K\x04t\x94\x8f\x94(K\x03\x90(K\x04\x91\x94\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\xc0\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00G\xfeA\xeb-f\x00X5e\x8c\x02od\x94\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94\x8c\x01k\x94K\x01sK\x07\x8c\x05seven\x94\x8c\x02s1\x94]\x94K\x01a\x8c\x02s2\x94h\x13u.",
}

// pyRepr renders an unpickled value like Python's repr (sets and frozensets as {...}, unknown objects as <name>).
func pyRepr(v any) string {
	var b strings.Builder
	var rec func(v any)
	seq := func(items []any, open, close string) {
		b.WriteString(open)
		for i, it := range items {
			if i > 0 {
				b.WriteString(", ")
			}
			rec(it)
		}
		if open == "(" && len(items) == 1 {
			b.WriteString(",")
		}
		b.WriteString(close)
	}
	rec = func(v any) {
		switch v := v.(type) {
		case nil:
			b.WriteString("None")
		case bool:
			if v {
				b.WriteString("True")
			} else {
				b.WriteString("False")
			}
		case int64:
			b.WriteString(strconv.FormatInt(v, 10))
		case *big.Int:
			b.WriteString(v.String())
		case float64:
			b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
		case string:
			b.WriteString("'" + v + "'")
		case pyBytes:
			b.WriteString("b'" + string(v) + "'")
		case *pyList:
			seq(v.items, "[", "]")
		case *pyTuple:
			seq(v.items, "(", ")")
		case *pySet:
			seq(v.items, "{", "}")
		case *pyDict:
			b.WriteString("{")
			for i := range v.keys {
				if i > 0 {
					b.WriteString(", ")
				}
				rec(v.keys[i])
				b.WriteString(": ")
				rec(v.vals[i])
			}
			b.WriteString("}")
		case *pyObject:
			b.WriteString("<" + pyTypeName(v) + ">")
		default:
			b.WriteString(fmt.Sprintf("<%T>", v))
		}
	}
	rec(v)
	return b.String()
}

func TestPickleProtocols(t *testing.T) {
	const tail = "None, True, False, (1, 2), (), (1,), (1, 2, 3), (1, 2, 3, 4), {3}, {4}, 1180591620717411303424, " +
		"-1180591620717411303424, 9223372036854775808, -1.5e+300], 'od': {'k': 1}, 7: 'seven', 's1': [1], 's2': [1]}"
	for p, data := range pythonPickles {
		t.Run(fmt.Sprintf("protocol%d", p), func(t *testing.T) {
			vm := &pickleVM{data: []byte(data)}
			v, err := vm.unpickle()
			if err != nil {
				t.Fatal(err)
			}
			bytesRepr := "b'y'"
			if p < 3 { // protocols 0-2 pickle bytes as _codecs.encode(str, 'latin1'), which stays opaque
				bytesRepr = "<_codecs.encode object>"
			}
			want := "{'a': [1, -2, 300, 70000, -70000, 2.5, 'xé世', " + bytesRepr + ", " + tail
			if got := pyRepr(v); got != want {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
			d := v.(*pyDict)
			s1, _ := d.get("s1")
			s2, _ := d.get("s2")
			if s1 != s2 {
				t.Fatal("the memo did not preserve sharing")
			}
		})
	}
}

func TestPickleMalformed(t *testing.T) {
	cases := []struct{ name, data, want string }{
		{"empty", "", "without STOP"},
		{"no stop", "\x80\x02}", "without STOP"},
		{"stop on empty stack", ".", "empty stack"},
		{"underflow", "\x80\x02R.", "underflow"},
		{"pop below mark", "K\x01(0.", "MARK"}, // POP at a mark pops the mark; then STOP returns 1
		{"missing mark", "t.", "MARK missing"},
		{"bad memo", "h\x05.", "memo entry 5"},
		{"short string", "X\xff\xff\xff\x7fabc", "ends early"},
		{"huge counted", "\x8d\xff\xff\xff\xff\xff\xff\xff\xff", "ends early"},
		{"long4 negative", "\x8b\xff\xff\xff\xff", "negative length"},
		{"bad protocol", "\x80\x09", "protocol 9"},
		{"unknown opcode", "\xff", "unknown pickle opcode 0xff"},
		{"ext", "\x82\x01", "extension"},
		{"setitem on list", "](K\x01K\x02u.", "SETITEM on a list"},
		{"append to dict", "}K\x01a.", "APPEND to a dict"},
		{"odd setitems", "}(K\x01u.", "odd"},
		{"bad persid", "(K\x01tQ.", "persistent id"},
		{"stack global types", "K\x01K\x02\x93.", "two strings"},
		{"rebuild args", "ctorch._utils\n_rebuild_tensor_v2\n(K\x01K\x02K\x03K\x04tR.", "not a storage"},
		{"text int", "I12x\n.", "bad integer"},
		{"text float", "Fx\n.", "bad float"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vm := &pickleVM{data: []byte(c.data), persistentLoad: storageLoader()}
			v, err := vm.unpickle()
			if c.name == "pop below mark" {
				if err != nil || v != int64(1) {
					t.Fatalf("got %v, %v", v, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

// TestPickleNoExecution checks that unknown globals never run and stay opaque, wherever they appear.
func TestPickleNoExecution(t *testing.T) {
	data := "\x80\x02}(X\x01\x00\x00\x00acos\nsystem\nX\x05\x00\x00\x00rm -rR" +
		"X\x01\x00\x00\x00bcargparse\nNamespace\n)\x81}X\x02\x00\x00\x00lrG?\xb9\x99\x99\x99\x99\x99\x9asbu."
	vm := &pickleVM{data: []byte(data)}
	v, err := vm.unpickle()
	if err != nil {
		t.Fatal(err)
	}
	if got := pyRepr(v); got != "{'a': <os.system object>, 'b': <argparse.Namespace object>}" {
		t.Fatalf("got %s", got)
	}
}
