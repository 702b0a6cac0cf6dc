package web

// Untrusted text in Postern's pages. Names, subjects, folder and file names come from senders (or from whoever
// created the folder), and Unicode lets such a string change how the text around it reads: a U+202E (RIGHT-TO-LEFT
// OVERRIDE) in a display name turns "<ecila@example.com>" after it into "<moc.elpmaxe@alice>" on screen, a subject
// "Invoice \u202Efdp.exe" reads as "Invoice exe.pdf". Two walls, each sufficient on its own for reordering:
//
//  1. text strips the bidi controls (Unicode's Bidi_Control property: embeddings, overrides, isolates, marks; UAX #9)
//     and the characters that show nothing (zero-width space, word joiner, BOM, fillers), so what is shown is what
//     is there;
//  2. isolate wraps the text in <bdi> (HTML's bidi isolate, unicode-bidi: isolate), so that whatever direction the
//     text has — a Hebrew or Arabic name is legitimate — it cannot reorder its neighbours, such as the address
//     next to it.
//
// A name can also lie without any trick character: "Your Bank <security@bank.example>" sent from
// attacker@evil.example shows "Your Bank" with the real address beside it, but a name that is itself an address
// ("admin@postern.example") or names a domain reads as that. people flags such names, and sender domains that mix
// scripts (a Cyrillic "а" in "pаypal.com"), and shows the ASCII (punycode, RFC 5891) form of any international
// domain, as Gmail and Fastmail do.

import (
	"html/template"
	"net/mail"
	"regexp"
	"sort"
	"strings"
	"unicode"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	pmail "github.com/postern/postern/mail"
)

// invisible reports a rune that reorders or hides text: bidi controls, zero-width and other blank format
// characters, and C0/C1 controls. ZWJ and ZWNJ (U+200C, U+200D) stay: emoji sequences and several scripts (Persian,
// the Indic ones) need them, and they reorder nothing.
func invisible(r rune) bool {
	switch {
	case unicode.IsControl(r), unicode.Is(unicode.Bidi_Control, r):
		return true
	case r == 0x200B, r == 0x2060, r == 0xFEFF, r == 0x180E, r >= 0x2061 && r <= 0x2064,
		r == 0x115F, r == 0x1160, r == 0x3164, r == 0xFFA0, r == 0x034F, r == 0xFFFC:
		return true
	}
	return false
}

// text is s without invisible characters; for attributes and the page title, where no element can isolate it.
func text(s string) string {
	if strings.IndexFunc(s, invisible) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if invisible(r) {
			return -1
		}
		return r
	}, s)
}

// isolate is text(s), escaped, inside <bdi>: for untrusted text in element content.
func isolate(s string) template.HTML {
	return template.HTML("<bdi>" + template.HTMLEscapeString(text(s)) + "</bdi>")
}

// person is an address as a page shows it.
type person struct {
	// Name is the display name, cleaned; "" if there is none.
	Name string
	// Email is the address, cleaned, with an international domain in its Unicode form.
	Email string
	// ASCII is the address with the domain in ASCII (punycode) when that differs from Email, else "".
	ASCII string
	// Warn says why this name or address may mislead, "" when nothing was found.
	Warn string
}

// people prepares addresses for display; check adds the warnings (the From field: the one a forger fakes).
func people(list []pmail.Address, check bool) []person {
	out := make([]person, 0, len(list))
	for _, a := range list {
		p := person{Name: strings.TrimSpace(text(a.Name)), Email: text(a.Email)}
		local, domain := splitAddr(p.Email)
		uni, ascii := domainForms(domain)
		if domain != "" {
			p.Email = local + "@" + uni
			if ascii != uni {
				p.ASCII = local + "@" + ascii
			}
		}
		if strings.EqualFold(p.Name, p.Email) || strings.EqualFold(p.Name, a.Email) {
			p.Name = "" // "bob@example.com <bob@example.com>" says nothing twice
		}
		if check {
			p.Warn = warning(p.Name, local, ascii)
			if p.Warn == "" && domain != "" {
				if scripts := mixedScripts(uni); scripts != "" {
					p.Warn = "The sender's domain mixes " + scripts + " letters, a common trick to imitate another domain. Its real form is " + ascii + "."
				}
			}
		}
		out = append(out, p)
	}
	return out
}

func splitAddr(addr string) (local, domain string) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return addr, ""
	}
	return addr[:i], addr[i+1:]
}

// domainForms returns a domain in Unicode and in ASCII (punycode); an undecodable domain is returned as is in both.
func domainForms(domain string) (uni, ascii string) {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		a = d
	}
	u, err := idna.Lookup.ToUnicode(a)
	if err != nil {
		u = d
	}
	return u, a
}

var (
	// addrInName finds something address-shaped in a display name.
	addrInName = regexp.MustCompile(`[^\s<>"'(),;:@\[\]]+@[^\s<>"'(),;:@\[\]]+\.[^\s<>"'(),;:@\[\]]+`)
	// domainInName finds dotted names ("bank.example", "pаypal.com") in a display name.
	domainInName = regexp.MustCompile(`[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?(?:\.[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?)+`)
)

// warning reports a display name that shows an address, or names a domain, other than the sender's (local@domain,
// domain in ASCII).
func warning(name, local, domain string) string {
	// Both patterns need a literal "." (and an address an "@"): most names have neither, and the regexps are a
	// large part of a list page's cost (issue 14).
	if name == "" || !strings.Contains(name, ".") {
		return ""
	}
	sender := strings.ToLower(local + "@" + domain)
	for _, m := range addrInNameOf(name) {
		if a, err := mail.ParseAddress(m); err == nil {
			l, d := splitAddr(a.Address)
			_, ascii := domainForms(d)
			if strings.ToLower(l+"@"+ascii) == sender {
				continue
			}
		}
		return "The name shows the address " + m + ", but this message comes from " + sender + "."
	}
	own := registrable(domain)
	for _, m := range domainInName.FindAllString(name, -1) {
		_, ascii := domainForms(m)
		reg := registrable(ascii)
		if reg == "" || reg == own {
			continue
		}
		return "The name mentions " + m + ", but this message comes from " + domain + "."
	}
	return ""
}

// addrInNameOf is addrInName's matches in name, none without an "@".
func addrInNameOf(name string) []string {
	if !strings.Contains(name, "@") {
		return nil
	}
	return addrInName.FindAllString(name, -1)
}

// registrable is a domain's registrable part (eTLD+1, "bank.example.co.uk" → "example.co.uk") when its suffix is a
// real, ICANN-managed one, else "": "J.Smith" is not a domain.
func registrable(ascii string) string {
	suffix, icann := publicsuffix.PublicSuffix(ascii)
	if !icann || suffix == ascii {
		return ""
	}
	reg, err := publicsuffix.EffectiveTLDPlusOne(ascii)
	if err != nil {
		return ""
	}
	return reg
}

// mixedScripts names the scripts of a domain label that mixes them ("Cyrillic and Latin"), "" if none does. The
// scripts that Chinese, Japanese and Korean names legitimately combine count as one, as in Chromium's IDN policy.
func mixedScripts(domain string) string {
	if isASCII(domain) {
		return "" // one script at most, Latin
	}
	for _, label := range strings.Split(domain, ".") {
		seen := map[string]bool{}
		for _, r := range label {
			if s := scriptOf(r); s != "" {
				seen[s] = true
			}
		}
		if len(seen) > 1 {
			names := make([]string, 0, len(seen))
			for s := range seen {
				names = append(names, s)
			}
			sort.Strings(names)
			return strings.Join(names, " and ")
		}
	}
	return ""
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func scriptOf(r rune) string {
	if r < 0x80 {
		if unicode.IsLetter(r) {
			return "Latin"
		}
		return ""
	}
	for _, name := range []string{"Han", "Hiragana", "Katakana", "Hangul", "Bopomofo"} {
		if unicode.Is(unicode.Scripts[name], r) {
			return "CJK"
		}
	}
	for name, table := range unicode.Scripts {
		if name == "Common" || name == "Inherited" {
			continue
		}
		if unicode.Is(table, r) {
			return name
		}
	}
	return ""
}
