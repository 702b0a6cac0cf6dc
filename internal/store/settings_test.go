package store

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const settingsIssuer = "https://auth.example.org"

// contractSettingsRoundTrip: a person without a row reads the defaults; a save is read back normalised, replaced
// whole by the next save, and kept apart from other people (same subject at another issuer included).
func contractSettingsRoundTrip(t *testing.T, s *testStore) {
	ctx := context.Background()
	s.now = func() time.Time { return at(0) }
	got, err := s.Settings(ctx, settingsIssuer, "alice")
	if err != nil {
		t.Fatalf("Settings(never saved) = %v", err)
	}
	if want := DefaultSettings(settingsIssuer, "alice"); !reflect.DeepEqual(got, want) {
		t.Errorf("Settings(never saved) = %+v, want %+v", got, want)
	}

	in := Settings{
		Issuer: settingsIssuer, Subject: "alice", DisplayName: "  Alice L. ", Signature: "Alice\r\nExample Ltd\r\n\r\n",
		TimeZone: "Europe/Berlin", PageSize: 25, Conversations: false,
		RemoteSenders: []string{"News@Example.org", "example.com", "news@example.org", "bücher.example"},
	}
	if err := s.SaveSettings(ctx, &in); err != nil {
		t.Fatalf("SaveSettings = %v", err)
	}
	want := Settings{
		Issuer: settingsIssuer, Subject: "alice", DisplayName: "Alice L.", Signature: "Alice\nExample Ltd",
		TimeZone: "Europe/Berlin", PageSize: 25, Conversations: false,
		RemoteSenders: []string{"news@example.org", "example.com", "xn--bcher-kva.example"}, UpdatedAt: at(0).UTC(),
	}
	got, err = s.Settings(ctx, settingsIssuer, "alice")
	if err != nil {
		t.Fatalf("Settings = %v", err)
	}
	if !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("Settings().UpdatedAt = %v, want %v", got.UpdatedAt, want.UpdatedAt)
	}
	got.UpdatedAt = want.UpdatedAt
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Settings() = %+v,\nwant       %+v", got, want)
	}

	s.now = func() time.Time { return at(time.Hour) }
	next := Settings{Issuer: settingsIssuer, Subject: "alice", Conversations: true}
	if err := s.SaveSettings(ctx, &next); err != nil {
		t.Fatalf("SaveSettings(again) = %v", err)
	}
	got, _ = s.Settings(ctx, settingsIssuer, "alice")
	if got.DisplayName != "" || got.RemoteSenders != nil || !got.Conversations || got.PageSize != 0 || !got.UpdatedAt.Equal(at(time.Hour)) {
		t.Errorf("Settings after a second save = %+v, want it replaced whole", got)
	}

	other, err := s.Settings(ctx, "https://other.example.org", "alice")
	if err != nil || other.DisplayName != "" || !other.Conversations {
		t.Errorf("Settings(other issuer) = %+v, %v, want the defaults", other, err)
	}
	if n := s.count(t, "settings"); n != 1 {
		t.Errorf("settings rows = %d, want 1", n)
	}
}

// contractSettingsRejects: invalid settings are refused with every problem named, and nothing is written.
func contractSettingsRejects(t *testing.T, s *testStore) {
	ctx := context.Background()
	bad := Settings{Issuer: settingsIssuer, Subject: "mallory", DisplayName: "Evil\r\nBcc: x@example.org",
		TimeZone: "../../etc/passwd", PageSize: 7, RemoteSenders: []string{"not a sender"}}
	err := s.SaveSettings(ctx, &bad)
	var inv InvalidSettingsError
	if !errors.As(err, &inv) {
		t.Fatalf("SaveSettings(bad) = %v, want an InvalidSettingsError", err)
	}
	for _, f := range []string{"display_name", "time_zone", "page_size", "remote_senders"} {
		if inv.Problem(f) == "" {
			t.Errorf("SaveSettings(bad) problems = %v, want one for %s", inv, f)
		}
	}
	if err := s.SaveSettings(ctx, &Settings{Subject: "x"}); err == nil {
		t.Errorf("SaveSettings(no issuer) = nil, want an error")
	}
	if n := s.count(t, "settings"); n != 0 {
		t.Errorf("settings rows after refused saves = %d, want 0", n)
	}
}

func TestSettingsCheck(t *testing.T) {
	many := make([]string, MaxRemoteSenders+1)
	for i := range many {
		many[i] = "s" + strings.Repeat("x", i%50) + "@" + string(rune('a'+i%26)) + strings.Repeat("y", i/26) + ".example"
	}
	for _, c := range []struct {
		name  string
		in    Settings
		field string // the one field with a problem, "" for none
	}{
		{"defaults", Settings{}, ""},
		{"everything set", Settings{DisplayName: "Zoë O’Brien", Signature: "Zoë\n\tCTO", TimeZone: "America/Argentina/Buenos_Aires", PageSize: 100, RemoteSenders: []string{"a@b.example", "b.example"}}, ""},
		{"UTC", Settings{TimeZone: "UTC"}, ""},
		{"name with a line break", Settings{DisplayName: "A\nB"}, "display_name"},
		{"name with a tab", Settings{DisplayName: "A\tB"}, "display_name"},
		{"name with a bidi override", Settings{DisplayName: "A\u202eB"}, "display_name"},
		{"name not UTF-8", Settings{DisplayName: "A\xffB"}, "display_name"},
		{"name too long", Settings{DisplayName: strings.Repeat("é", MaxDisplayName+1)}, "display_name"},
		{"name at the limit", Settings{DisplayName: strings.Repeat("é", MaxDisplayName)}, ""},
		{"signature with an escape", Settings{Signature: "A\x1b[31mB"}, "signature"},
		{"signature too long", Settings{Signature: strings.Repeat("x", MaxSignature+1)}, "signature"},
		{"signature with too many lines", Settings{Signature: strings.Repeat("x\n", MaxSignatureRows) + "x"}, "signature"},
		{"zone Local", Settings{TimeZone: "Local"}, "time_zone"},
		{"zone unknown", Settings{TimeZone: "Mars/Olympus_Mons"}, "time_zone"},
		{"zone path", Settings{TimeZone: "../zoneinfo/UTC"}, "time_zone"},
		{"zone too long", Settings{TimeZone: strings.Repeat("A", 65)}, "time_zone"},
		{"page size not offered", Settings{PageSize: 30}, "page_size"},
		{"page size negative", Settings{PageSize: -25}, "page_size"},
		{"sender with a name", Settings{RemoteSenders: []string{"Bob <bob@example.org>"}}, "remote_senders"},
		{"sender a bare word", Settings{RemoteSenders: []string{"localhost"}}, "remote_senders"},
		{"sender too long", Settings{RemoteSenders: []string{strings.Repeat("a", 250) + "@b.example"}}, "remote_senders"},
		{"too many senders", Settings{RemoteSenders: many}, "remote_senders"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := c.in
			err := in.Check()
			var inv InvalidSettingsError
			switch {
			case c.field == "" && err != nil:
				t.Errorf("Check() = %v, want nil", err)
			case c.field != "" && (!errors.As(err, &inv) || len(inv) != 1 || inv.Problem(c.field) == ""):
				t.Errorf("Check() = %v, want one problem with %s", err, c.field)
			}
		})
	}
}

func TestShowsRemote(t *testing.T) {
	st := Settings{RemoteSenders: []string{"news@shop.example", "example.org", "xn--bcher-kva.example"}}
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"news@shop.example", true},
		{"NEWS@Shop.Example", true},
		{"sales@shop.example", false},
		{"anyone@example.org", true},
		{"anyone@mail.example.org", true},
		{"anyone@badexample.org", false},
		{"anyone@example.org.evil.example", false},
		{"info@bücher.example", true},
		{"", false},
		{"not an address", false},
	} {
		if got := st.ShowsRemote(c.addr); got != c.want {
			t.Errorf("ShowsRemote(%q) = %v, want %v", c.addr, got, c.want)
		}
	}
	if (Settings{}).ShowsRemote("news@shop.example") {
		t.Errorf("ShowsRemote with an empty list = true, want false")
	}
}
