package bridge

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestReadCommand(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     command
		err      error
		acks     int // continuation requests sent
	}{
		{"login atoms", "a1 login alice@example.test pw\r\n", command{"a1", "LOGIN", []arg{{argAtom, "alice@example.test"}, {argAtom, "pw"}}}, nil, 0},
		{"quoted with escapes", `a LOGIN "al ice" "p\"w\\"` + "\r\n", command{"a", "LOGIN", []arg{{argString, "al ice"}, {argString, `p"w\`}}}, nil, 0},
		{"literals", "a LOGIN {5}\r\nalice {3+}\r\np w\r\n", command{"a", "LOGIN", []arg{{argString, "alice"}, {argString, "p w"}}}, nil, 1},
		{"id list", `b ID ("name" "Thunderbird" "version" NIL)` + "\r\n", command{"b", "ID", []arg{{kind: argListStart}, {argString, "name"}, {argString, "Thunderbird"}, {argString, "version"}, {kind: argNil}, {kind: argListEnd}}}, nil, 0},
		{"id nil", "b ID NIL\n", command{"b", "ID", []arg{{kind: argNil}}}, nil, 0},
		{"sasl-ir", "c AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n", command{"c", "AUTHENTICATE", []arg{{argAtom, "PLAIN"}, {argAtom, "AGFsaWNlAHB3"}}}, nil, 0},
		{"empty sasl-ir", "c AUTHENTICATE PLAIN =\r\n", command{"c", "AUTHENTICATE", []arg{{argAtom, "PLAIN"}, {argAtom, "="}}}, nil, 0},
		{"no args", "d capability\r\n", command{"d", "CAPABILITY", nil}, nil, 0},
		{"tag with plus", "a+ NOOP\r\n", command{}, errSyntax, 0},
		{"no command", "a\r\n", command{tag: "a"}, errSyntax, 0},
		{"double space", "a LOGIN  x y\r\n", command{"a", "LOGIN", nil}, errSyntax, 0},
		{"unterminated quote", "a LOGIN \"x\r\n", command{"a", "LOGIN", nil}, errSyntax, 0},
		{"cr in quote", "a LOGIN \"x\ry\" z\r\n", command{"a", "LOGIN", nil}, errSyntax, 0},
		{"unbalanced list", "a ID (\"x\"\r\n", command{"a", "ID", []arg{{kind: argListStart}, {argString, "x"}}}, errSyntax, 0},
		{"huge literal", "a LOGIN {99999999}\r\n", command{"a", "LOGIN", nil}, errTooLong, 0},
		{"huge line", "a LOGIN " + strings.Repeat("x", maxLine+10) + "\r\n", command{}, errTooLong, 0},
		{"literal cut short", "a LOGIN {10}\r\nabc", command{"a", "LOGIN", nil}, io.ErrUnexpectedEOF, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w bytes.Buffer
			got, err := readCommand(bufio.NewReader(strings.NewReader(tc.in)), &w)
			if !errors.Is(err, tc.err) {
				t.Fatalf("readCommand = %+v, %v; want error %v", got, err, tc.err)
			}
			if err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("readCommand = %+v, want %+v", got, tc.want)
			}
			if err != nil && got.tag != tc.want.tag {
				t.Errorf("tag on error = %q, want %q (for a tagged BAD)", got.tag, tc.want.tag)
			}
			if n := strings.Count(w.String(), "+ "); n != tc.acks {
				t.Errorf("continuation requests = %d, want %d", n, tc.acks)
			}
		})
	}
}

// encode renders a parsed command so that it parses again to the same command.
func encode(c command) string {
	var b strings.Builder
	b.WriteString(c.tag + " " + c.name)
	prev := argListStart
	for i, a := range c.args {
		if i == 0 || (a.kind != argListEnd && prev != argListStart) {
			b.WriteByte(' ')
		}
		b.WriteString(a.String())
		prev = a.kind
	}
	return b.String() + "\r\n"
}

// FuzzReadCommand feeds arbitrary bytes to the pre-login reader: it must not panic, must respect its bounds, and
// whatever it accepts must survive a round trip through encode.
func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"a LOGIN alice pw\r\n",
		"a LOGIN {5}\r\nalice {2+}\r\npw\r\n",
		`b ID ("name" "x" "version" NIL)` + "\r\n",
		"c AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n",
		"d STARTTLS\r\ne CAPABILITY\r\n",
		"a LOGIN \"q\\\"uote\" x\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		for i := 0; i < 8; i++ {
			c, err := readCommand(r, io.Discard)
			if errors.Is(err, errSyntax) {
				continue
			}
			if err != nil {
				return
			}
			if !validTag(c.tag) || !validAtom(c.name) || len(c.args) > maxArgs {
				t.Fatalf("accepted a malformed command %+v", c)
			}
			size := 0
			for _, a := range c.args {
				size += len(a.val)
			}
			if size > maxCommand {
				t.Fatalf("arguments of %d bytes, over the bound %d", size, maxCommand)
			}
			if c.name == "AUTHENTICATE" {
				continue
			}
			again, err := readCommand(bufio.NewReader(strings.NewReader(encode(c))), io.Discard)
			if err != nil || !reflect.DeepEqual(again, c) {
				t.Fatalf("round trip of %+v = %+v, %v", c, again, err)
			}
		}
	})
}
