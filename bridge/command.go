package bridge

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"strings"
)

// The bridge reads only the few commands a client sends before it is logged in (RFC 9051 section 6.1, 6.2); after
// login it parses nothing and splices bytes. The reader is strict and bounded because anyone on the network can
// talk to it: a line is at most maxLine bytes, a literal at most maxLiteral, a command at most maxCommand in all.
const (
	maxLine    = 8 << 10
	maxLiteral = 8 << 10
	maxCommand = 16 << 10
	maxArgs    = 64
)

var (
	// errTooLong: a line, literal or command over its bound. The connection ends, since the rest of it cannot be
	// told apart from the next command.
	errTooLong = errors.New("bridge: command too long")
	// errSyntax: a command that does not parse; it is answered BAD and the connection goes on.
	errSyntax = errors.New("bridge: command syntax")
)

// argKind says what an argument was on the wire.
type argKind int

const (
	argAtom argKind = iota
	argString
	argNil
	argListStart
	argListEnd
)

// arg is one argument of a command: an atom, a string (quoted or literal), NIL, or a parenthesis of a list.
type arg struct {
	kind argKind
	val  string
}

// command is one parsed command line. name is upper case.
type command struct {
	tag  string
	name string
	args []arg
}

// readCommand reads one command from r. A synchronizing literal {n} is acknowledged on w with a continuation
// request (RFC 9051 section 4.3); a non-synchronizing one {n+} is read at once (RFC 7888, LITERAL+). A syntax error
// returns the tag when it could be read, so the answer can be tagged BAD; the rest of the line has been consumed.
func readCommand(r *bufio.Reader, w io.Writer) (command, error) {
	var (
		cmd   command
		total int
		depth int
	)
	line, err := readLine(r)
	if err != nil {
		return cmd, err
	}
	total += len(line)
	tag, rest, ok := strings.Cut(line, " ")
	if !validTag(tag) {
		return cmd, errSyntax
	}
	cmd.tag = tag
	if !ok {
		return cmd, errSyntax
	}
	name, rest, _ := strings.Cut(rest, " ")
	if !validAtom(name) {
		return cmd, errSyntax
	}
	cmd.name = strings.ToUpper(name)
	if cmd.name == "AUTHENTICATE" {
		// The SASL initial response (RFC 4959) is an atom that may contain '=' and '+' and '/'; the mechanism too
		// is an atom. Neither may be a literal.
		for _, f := range strings.Split(rest, " ") {
			if f == "" || !validSASLAtom(f) {
				if rest == "" {
					break
				}
				return cmd, errSyntax
			}
			cmd.args = append(cmd.args, arg{argAtom, f})
		}
		return cmd, nil
	}
	s := rest
	for {
		if s == "" {
			break
		}
		if len(cmd.args) >= maxArgs {
			return cmd, errSyntax
		}
		switch c := s[0]; {
		case c == '(':
			depth++
			cmd.args = append(cmd.args, arg{kind: argListStart})
			s = s[1:]
			continue
		case c == ')':
			if depth == 0 {
				return cmd, errSyntax
			}
			depth--
			cmd.args = append(cmd.args, arg{kind: argListEnd})
			s = s[1:]
		case c == '"':
			v, n, ok := unquote(s)
			if !ok {
				return cmd, errSyntax
			}
			cmd.args = append(cmd.args, arg{argString, v})
			s = s[n:]
		case c == '{':
			n, sync, ok := literalHeader(s)
			if !ok {
				return cmd, errSyntax
			}
			if n > maxLiteral || total+n > maxCommand {
				return cmd, errTooLong
			}
			if sync {
				if _, err := io.WriteString(w, "+ go ahead\r\n"); err != nil {
					return cmd, err
				}
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(r, buf); err != nil {
				return cmd, err
			}
			cmd.args = append(cmd.args, arg{argString, string(buf)})
			// The command goes on in the next line after the literal's octets.
			if s, err = readLine(r); err != nil {
				return cmd, err
			}
			if total += n + len(s); total > maxCommand {
				return cmd, errTooLong
			}
		default:
			end := strings.IndexAny(s, " ()")
			if end < 0 {
				end = len(s)
			}
			a := s[:end]
			if !validAtom(a) && !validAstring(a) {
				return cmd, errSyntax
			}
			if strings.EqualFold(a, "NIL") {
				cmd.args = append(cmd.args, arg{kind: argNil})
			} else {
				cmd.args = append(cmd.args, arg{argAtom, a})
			}
			s = s[end:]
		}
		// Arguments are separated by one space; a list's parenthesis needs none.
		switch {
		case s == "":
		case s[0] == ' ':
			s = s[1:]
			if s == "" || s[0] == ' ' {
				return cmd, errSyntax
			}
		case s[0] == ')':
		default:
			return cmd, errSyntax
		}
	}
	if depth != 0 {
		return cmd, errSyntax
	}
	return cmd, nil
}

// readLine reads up to CRLF (a bare LF is taken too, as most servers do) and returns the line without it.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(b)+len(frag) > maxLine+2 {
			return "", errTooLong
		}
		b = append(b, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		b = b[:len(b)-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
		return string(b), nil
	}
}

// unquote reads a quoted string at the start of s (RFC 9051 section 4.3: only \" and \\ are escaped, no CR or LF)
// and returns its value and the number of bytes it took.
func unquote(s string) (string, int, bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), i + 1, true
		case '\\':
			i++
			if i == len(s) || (s[i] != '"' && s[i] != '\\') {
				return "", 0, false
			}
			b.WriteByte(s[i])
		case '\r', '\n', 0:
			return "", 0, false
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, false
}

// literalHeader parses "{n}" or "{n+}" ending s (RFC 9051 section 4.3, RFC 7888).
func literalHeader(s string) (n int, sync, ok bool) {
	if len(s) < 3 || s[len(s)-1] != '}' {
		return 0, false, false
	}
	body := s[1 : len(s)-1]
	sync = true
	if strings.HasSuffix(body, "+") {
		body, sync = body[:len(body)-1], false
	}
	if body == "" || len(body) > 10 || strings.TrimLeft(body, "0123456789") != "" {
		return 0, false, false
	}
	n, err := strconv.Atoi(body)
	if err != nil {
		return 0, false, false
	}
	return n, sync, true
}

// validTag: a tag is astring characters except '+' (RFC 9051 section 9, tag).
func validTag(s string) bool {
	return s != "" && !strings.ContainsRune(s, '+') && validAstring(s)
}

// validAtom: ATOM-CHAR is any CHAR except atom-specials: ( ) { SP CTL % * " \ ].
func validAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// validAstring: an atom that may also contain ']' (ASTRING-CHAR, RFC 9051 section 9).
func validAstring(s string) bool {
	return validAtom(strings.ReplaceAll(s, "]", "x"))
}

// validSASLAtom: base64 or "=" or a mechanism name.
func validSASLAtom(s string) bool {
	return validAtom(s)
}

// String renders the argument as it could be sent again: atoms as they were, strings quoted or as a literal.
// It exists for the fuzz test's round trip.
func (a arg) String() string {
	switch a.kind {
	case argNil:
		return "NIL"
	case argListStart:
		return "("
	case argListEnd:
		return ")"
	case argString:
		if strings.ContainsAny(a.val, "\r\n\x00") || !isASCII(a.val) {
			return "{" + strconv.Itoa(len(a.val)) + "+}\r\n" + a.val
		}
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a.val) + `"`
	}
	return a.val
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
