package mail

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCleanFilename(t *testing.T) {
	long := strings.Repeat("é", 200) + ".pdf" // 404 bytes
	tests := []struct{ name, in, want string }{
		{"plain", "report.pdf", "report.pdf"},
		{"path", `C:\fakepath\report.pdf`, "report.pdf"},
		{"unix path", "../../etc/passwd", "passwd"},
		{"bidi override", "invoice\u202Efdp.exe", "invoicefdp.exe"},
		{"bidi isolate and marks", "a\u2066b\u2069c\u200Ed\u200F.txt", "abcd.txt"},
		{"zero width", "pay\u200Bpal\u200C\u200D\u2060\uFEFF.pdf", "paypal.pdf"},
		{"soft hyphen and separators", "in\u00ADvoice\u2028\u2029.pdf", "invoice.pdf"},
		{"controls", "a\x00b\x1bc\x7f\u0085.txt", "abc.txt"},
		{"encoded word", "=?UTF-8?B?w5xiZXJzaWNodC5wZGY=?=", "Übersicht.pdf"},
		{"encoded bidi", "=?UTF-8?Q?x=E2=80=AEfdp.exe?=", "xfdp.exe"},
		{"invalid utf-8", "a\xffb.txt", "a\uFFFDb.txt"},
		{"spaces", "  name.txt  ", "name.txt"},
		{"dots", "..", ""},
		{"only invisible", "\u202E\u200B", ""},
		{"emoji kept", "cat 🐈.png", "cat 🐈.png"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CleanFilename(tt.in); got != tt.want {
				t.Errorf("CleanFilename(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	got := CleanFilename(long)
	if len(got) > MaxFilenameBytes || !strings.HasPrefix(long, got) || !utf8Valid(got) {
		t.Errorf("CleanFilename(long) = %d bytes %q, want a valid prefix of at most %d", len(got), got, MaxFilenameBytes)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }

// TestBuildCleansFilenames: a composed message never carries a bidi override in an attachment's name, whatever
// path the name came by (uploads, resumed drafts, forwards).
func TestBuildCleansFilenames(t *testing.T) {
	d := Draft{From: Address{"", alice}, To: []Address{{"", bobAddr}}, Subject: "x", Text: "x",
		Attachments: []Attachment{{Filename: "evil\u202Efdp.exe", ContentType: "application/octet-stream", Data: []byte("x")}}}
	raw, err := d.Build(time.Now(), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	m := parseMessage(raw)
	if len(m.Attachments) != 1 || m.Attachments[0].Filename != "evilfdp.exe" {
		t.Errorf("attachments = %+v, want one named evilfdp.exe", m.Attachments)
	}
}

func TestAddressError(t *testing.T) {
	_, err := ParseAddressList("ana@example.test, not an address; bo@example.test")
	var ae *AddressError
	if !errors.Is(err, ErrInvalidAddress) || !errors.As(err, &ae) || ae.Entry != "not an address" {
		t.Errorf("ParseAddressList() = %v, want an AddressError naming %q", err, "not an address")
	}
	if _, err := ParseAddressList("ana@example.test\r\nBcc: eve@example.test"); !errors.Is(err, ErrHeaderInjection) || errors.Is(err, ErrInvalidAddress) {
		t.Errorf("ParseAddressList(CRLF) = %v, want ErrHeaderInjection", err)
	}
}

// TestSplitAddressList (moved from web, whose copy it replaced): entries are cut at the commas and semicolons
// between them, not inside quotes or angle brackets.
func TestSplitAddressList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"a@x.test, b@x.test", []string{"a@x.test", "b@x.test"}},
		{`"Marley, Bob" <bob@x.test>; c@x.test,,`, []string{`"Marley, Bob" <bob@x.test>`, "c@x.test"}},
		{`"a \"q, r\"" <a@x.test>`, []string{`"a \"q, r\"" <a@x.test>`}},
		{"(a, comment) d@x.test, e@x.test", []string{"(a, comment) d@x.test", "e@x.test"}},
		{"  ", nil},
	}
	for _, tc := range tests {
		if got := splitAddressList(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("splitAddressList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestPartNamesCleaned: the read path (and so a resumed draft, whose attachments are read back) gets the same
// sanitiser: a bidi override or a zero-width space in a part's name never reaches the caller.
func TestPartNamesCleaned(t *testing.T) {
	raw := strings.ReplaceAll("From: a@example.test\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"+
		"--b\nContent-Type: text/plain\n\nhi\n"+
		"--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename*=UTF-8''evil%E2%80%AEfdp%E2%80%8B.exe\n\nx\n--b--\n", "\n", "\r\n")
	m := parseMessage([]byte(raw))
	if len(m.Attachments) != 1 || m.Attachments[0].Filename != "evilfdp.exe" {
		t.Errorf("attachments = %+v, want one named evilfdp.exe", m.Attachments)
	}
}

// TestOwnCopyRoundTrip: the Bcc that OwnCopy writes on the user's copy comes back as Message.Bcc (a resumed draft),
// names encoded, and a value with a line break is left out.
func TestOwnCopyRoundTrip(t *testing.T) {
	d := Draft{From: Address{"", alice}, To: []Address{{"", bobAddr}}, Subject: "x", Text: "x"}
	raw, err := d.Build(time.Now(), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	bcc := []Address{{"Jürgen Groß", "j@example.test"}, {"Marley, Bob", "bob@example.org"}, {"Eve\r\nX-Evil: 1", "eve@example.test"}}
	cp := OwnCopy(raw, bcc)
	if strings.Contains(string(cp), "X-Evil") {
		t.Fatalf("OwnCopy wrote a header from a name:\n%s", cp)
	}
	m := parseMessage(cp)
	if !slices.Equal(m.Bcc, bcc[:2]) {
		t.Errorf("Bcc read back = %+v, want %+v", m.Bcc, bcc[:2])
	}
	if got := OwnCopy(raw, nil); string(got) != string(raw) {
		t.Error("OwnCopy without Bcc changed the message")
	}
}
