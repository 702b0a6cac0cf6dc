package mail

import (
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxFilenameBytes bounds a name CleanFilename returns (the usual file
// system limit).
const MaxFilenameBytes = 255

// CleanFilename makes a file name that a sender or a browser chose safe to
// show, store and offer for download. It is the one sanitiser for every
// path a name takes: parts read from mail, attachments uploaded, resumed
// drafts, messages composed. It decodes RFC 2047 encoded words left in the
// name (Outlook and Gmail use them inside parameters, against RFC 2047
// section 5), keeps only the last path element, and drops what cannot be
// seen: control characters, and format characters (Unicode category Cf),
// among them the bidirectional overrides and isolates (U+202A–U+202E,
// U+2066–U+2069), which make "invoice\u202Efdp.exe" read as
// "invoiceexe.pdf", and the zero-width characters (U+200B–U+200D, U+2060,
// U+FEFF), which hide inside a name that looks like another; line and
// paragraph separators too. Invalid UTF-8 becomes U+FFFD. The result has no
// surrounding spaces, is at most MaxFilenameBytes long, and is "" for
// nothing usable ("", ".", "..").
func CleanFilename(name string) string {
	if strings.Contains(name, "=?") {
		if dec, err := wordDecoder.DecodeHeader(name); err == nil {
			name = dec
		}
	}
	name = strings.ToValidUTF8(name, "\uFFFD")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if invisible(r) {
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if len(name) > MaxFilenameBytes {
		cut := MaxFilenameBytes
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = strings.TrimSpace(name[:cut])
	}
	if name == "." || name == ".." {
		return ""
	}
	return name
}

// invisible reports a character that shows nothing, or changes how its
// neighbours show: controls (Cc), format characters (Cf: bidi controls,
// zero-width spaces and joiners, the BOM, soft hyphen) and the line and
// paragraph separators (Zl, Zp).
func invisible(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) || unicode.Is(unicode.Bidi_Control, r)
}

// ErrInvalidAddress is wrapped by ParseAddressList's error for an entry
// that is not an address; an *AddressError names the entry.
var ErrInvalidAddress = errors.New("mail: invalid address")

// AddressError names the first entry of an address list that is not an
// address, as typed.
type AddressError struct {
	Entry string
}

func (e *AddressError) Error() string { return fmt.Sprintf("mail: invalid address %q", e.Entry) }

// Is makes errors.Is(err, ErrInvalidAddress) true.
func (e *AddressError) Is(target error) bool { return target == ErrInvalidAddress }

// ParseAddressList parses an address list as typed into a To field (RFC
// 5322 section 3.4): `Bob <bob@example.org>, "Nguyen, Carol"
// <carol@example.org>, dave@example.org`. Semicolons are accepted as
// separators and empty entries skipped; encoded words (RFC 2047) are
// decoded. A CR or LF gives ErrHeaderInjection, an entry that is not an
// address an *AddressError naming it.
func ParseAddressList(s string) ([]Address, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("%w: address list", ErrHeaderInjection)
	}
	list, bad := parseAddresses(s)
	if bad != "" {
		return nil, &AddressError{Entry: bad}
	}
	return list, nil
}

// parseAddresses parses an address list entry by entry, so that one bad
// entry does not lose the others (net/mail fails the whole list); it
// returns the entries that parse, and the first one that does not.
func parseAddresses(s string) (out []Address, bad string) {
	p := netmail.AddressParser{WordDecoder: wordDecoder}
	for _, entry := range splitAddressList(s) {
		a, err := p.Parse(entry)
		if err != nil {
			if bad == "" {
				bad = entry
			}
			continue
		}
		out = append(out, Address{Name: a.Name, Email: a.Address})
	}
	return out, bad
}

// splitAddressList splits an address list at commas (and semicolons, which
// people type) outside quoted strings, comments and angle brackets.
func splitAddressList(s string) []string {
	var (
		out     []string
		b       strings.Builder
		quoted  bool
		escaped bool
		comment int
		angle   bool
	)
	flush := func() {
		if t := strings.TrimSpace(b.String()); t != "" {
			out = append(out, t)
		}
		b.Reset()
	}
	for _, r := range s {
		switch {
		case escaped:
			escaped = false
		case r == '\\' && (quoted || comment > 0):
			escaped = true
		case r == '"' && comment == 0:
			quoted = !quoted
		case quoted:
		case r == '(':
			comment++
		case r == ')' && comment > 0:
			comment--
		case comment > 0:
		case r == '<':
			angle = true
		case r == '>':
			angle = false
		case (r == ',' || r == ';') && !angle:
			flush()
			continue
		}
		b.WriteRune(r)
	}
	flush()
	return out
}
