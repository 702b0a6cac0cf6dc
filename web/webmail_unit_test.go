package web

import (
	"slices"
	"testing"

	"github.com/postern/postern/mail"
)

// TestFormatAddressRoundTrips checks that what the editor shows parses back to the same addresses.
func TestFormatAddressRoundTrips(t *testing.T) {
	in := []mail.Address{{Name: "Marley, Bob", Email: "bob@x.test"}, {Name: `Ann "A." Lee`, Email: "ann@x.test"}, {Email: "c@x.test"}, {Name: "Jürgen Groß", Email: "j@x.test"}}
	got, err := mail.ParseAddressList(formatAddresses(in))
	if err != nil {
		t.Fatalf("ParseAddressList(%q): %v", formatAddresses(in), err)
	}
	if !slices.Equal(got, in) {
		t.Errorf("round trip = %+v, want %+v", got, in)
	}
}

func TestParseUIDs(t *testing.T) {
	got, err := parseUIDs([]string{"3", "1,2", "3"})
	if err != nil || !slices.Equal(got, []uint32{1, 2, 3}) {
		t.Errorf("parseUIDs = %v, %v", got, err)
	}
	for _, bad := range []string{"0", "-1", "x", "4294967296"} {
		if _, err := parseUIDs([]string{bad}); err == nil {
			t.Errorf("parseUIDs(%q) accepted", bad)
		}
	}
}

func TestParseMsgRef(t *testing.T) {
	tests := []struct {
		in   string
		box  string
		uid  uint32
		want bool
	}{
		{"INBOX/7", "INBOX", 7, true},
		{"Projects/2026/12", "Projects/2026", 12, true},
		{"INBOX/0", "", 0, false},
		{"/7", "", 0, false},
		{"INBOX", "", 0, false},
	}
	for _, tc := range tests {
		box, uid, ok := parseMsgRef(tc.in)
		if box != tc.box || uid != tc.uid || ok != tc.want {
			t.Errorf("parseMsgRef(%q) = %q, %d, %v", tc.in, box, uid, ok)
		}
	}
}

func TestCheckFolderName(t *testing.T) {
	for _, ok := range []string{"Clients", "Clients/Acme", "Reçus 2026", "INBOX/Sub"} {
		if p := checkFolderName(ok, "/"); p != "" {
			t.Errorf("checkFolderName(%q) = %q, want ok", ok, p)
		}
	}
	for _, bad := range []string{"", "a%", "a*", "/a", "a/", "a//b", "Inbox", "a\tb"} {
		if p := checkFolderName(bad, "/"); p == "" {
			t.Errorf("checkFolderName(%q) accepted", bad)
		}
	}
}

func TestCleanFilename(t *testing.T) {
	tests := map[string]string{
		`C:\fakepath\report.pdf`: "report.pdf",
		"../../etc/passwd":       "passwd",
		"a\r\nb.txt":             "ab.txt",
		"..":                     "attachment",
		"":                       "attachment",
	}
	for in, want := range tests {
		if got := cleanFilename(in); got != want {
			t.Errorf("cleanFilename(%q) = %q, want %q", in, got, want)
		}
	}
}
