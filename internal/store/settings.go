package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // the time-zone check gives the same answer on every host, with or without /usr/share/zoneinfo
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Settings are one person's preferences, stored server-side so they follow the user to every browser (issue 15).
// The zero value of every field means "the default".
type Settings struct {
	// Issuer and Subject identify the person (OIDC Core §2), as for devices.
	Issuer, Subject string
	// DisplayName is the name in the From of mail the user sends; "" means the IdP's name claim.
	DisplayName string
	// Signature is plain text appended to new messages below a "-- " line; "" means none. Lines end in "\n".
	Signature string
	// TimeZone is an IANA zone name ("Europe/Berlin"); "" means the browser's zone.
	TimeZone string
	// PageSize is the number of messages per list page, one of PageSizes; 0 means the server's default.
	PageSize int
	// Conversations groups the message list into conversations; DefaultSettings turns it on.
	Conversations bool
	// RemoteSenders are the senders whose remote content (images, fonts) is always shown: lower-case addresses
	// ("news@example.org") and domains ("example.org", which also covers its subdomains), domains in ASCII form.
	RemoteSenders []string
	// UpdatedAt is stamped by SaveSettings.
	UpdatedAt time.Time
}

// DefaultSettings are the settings of a person who never saved any.
func DefaultSettings(issuer, subject string) Settings {
	return Settings{Issuer: issuer, Subject: subject, Conversations: true}
}

// Limits on settings. They keep a row small and a hostile form from filling the database.
const (
	MaxDisplayName   = 100  // characters
	MaxSignature     = 1000 // characters
	MaxSignatureRows = 20   // lines
	MaxRemoteSenders = 200  // entries
	maxSenderLength  = 254  // RFC 5321 §4.5.3.1.3: the longest usable address
	maxZoneLength    = 64
)

// PageSizes are the page sizes a person may choose (besides 0, the server's default).
var PageSizes = []int{25, 50, 100}

// FieldProblem is one invalid setting: the field (display_name, signature, time_zone, page_size, remote_senders)
// and what is wrong with it, in plain words a settings page can show next to the field.
type FieldProblem struct {
	Field, Problem string
}

// InvalidSettingsError lists every invalid field of a Settings, so that a form can mark them all at once.
type InvalidSettingsError []FieldProblem

func (e InvalidSettingsError) Error() string {
	fields := make([]string, len(e))
	for i, p := range e {
		fields[i] = p.Field
	}
	return "store: invalid settings: " + strings.Join(fields, ", ")
}

// Problem returns the problem with field, "" if there is none.
func (e InvalidSettingsError) Problem(field string) string {
	for _, p := range e {
		if p.Field == field {
			return p.Problem
		}
	}
	return ""
}

// Check normalises s in place (trims the name, turns CRLF into LF, lower-cases and deduplicates the senders, puts
// their domains in ASCII) and returns an InvalidSettingsError naming every field that is still not acceptable, or
// nil. SaveSettings calls it, so nothing unchecked is stored; a settings form calls it first to show the problems.
func (s *Settings) Check() error {
	var bad InvalidSettingsError
	add := func(field, problem string) { bad = append(bad, FieldProblem{field, problem}) }

	s.DisplayName = strings.TrimSpace(s.DisplayName)
	switch {
	case !utf8.ValidString(s.DisplayName) || strings.IndexFunc(s.DisplayName, hiddenRune) >= 0:
		add("display_name", "The name may not contain line breaks, tabs or other invisible control characters.")
	case utf8.RuneCountInString(s.DisplayName) > MaxDisplayName:
		add("display_name", fmt.Sprintf("The name is too long: at most %d characters.", MaxDisplayName))
	}

	s.Signature = strings.TrimRight(strings.ReplaceAll(s.Signature, "\r\n", "\n"), " \t\n")
	switch {
	case !utf8.ValidString(s.Signature) || strings.IndexFunc(s.Signature, func(r rune) bool { return r != '\n' && r != '\t' && hiddenRune(r) }) >= 0:
		add("signature", "The signature may not contain invisible control characters.")
	case utf8.RuneCountInString(s.Signature) > MaxSignature:
		add("signature", fmt.Sprintf("The signature is too long: at most %d characters.", MaxSignature))
	case strings.Count(s.Signature, "\n") >= MaxSignatureRows:
		add("signature", fmt.Sprintf("The signature is too long: at most %d lines.", MaxSignatureRows))
	}

	s.TimeZone = strings.TrimSpace(s.TimeZone)
	if _, ok := TimeZone(s.TimeZone); s.TimeZone != "" && !ok {
		add("time_zone", "This is not a time zone this server knows. Pick one from the list, such as Europe/Berlin.")
	}

	if s.PageSize != 0 && !validPageSize(s.PageSize) {
		add("page_size", "Pick 25, 50 or 100 messages per page.")
	}

	senders, problem := normalizeSenders(s.RemoteSenders)
	s.RemoteSenders = senders
	if problem != "" {
		add("remote_senders", problem)
	}
	if bad != nil {
		return bad
	}
	return nil
}

// hiddenRune is a character a name or signature must not hold: C0/C1 controls (line breaks, which would also
// break a mail header, tabs, escapes) and the bidi controls, which reorder what recipients see (UAX #9).
func hiddenRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == utf8.RuneError
}

func validPageSize(n int) bool {
	for _, p := range PageSizes {
		if n == p {
			return true
		}
	}
	return false
}

// normalizeSenders lower-cases, validates and deduplicates the remote-content allowlist, keeping its order; problem
// names the first entry that is neither an address nor a domain.
func normalizeSenders(in []string) (out []string, problem string) {
	seen := map[string]bool{}
	for _, e := range in {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		n, ok := senderKey(e)
		if !ok {
			if problem == "" {
				problem = fmt.Sprintf("“%s” is neither a mail address (news@example.org) nor a domain (example.org).", clipRunes(e, 60))
			}
			continue
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if len(out) > MaxRemoteSenders && problem == "" {
		problem = fmt.Sprintf("The list is too long: at most %d senders.", MaxRemoteSenders)
	}
	return out, problem
}

// senderKey is the allowlist form of an address or a domain: lower case, the domain in ASCII (RFC 5891), so that
// "news@bücher.example" and "news@xn--bcher-kva.example" are one entry and one match.
func senderKey(e string) (string, bool) {
	if len(e) > maxSenderLength {
		return "", false
	}
	e = strings.ToLower(strings.TrimSuffix(e, "."))
	local, domain, isAddr := strings.Cut(e, "@")
	if !isAddr {
		domain, local = local, ""
	}
	ascii, err := idna.Lookup.ToASCII(domain)
	if err != nil || !strings.Contains(ascii, ".") {
		return "", false
	}
	if !isAddr {
		return ascii, true
	}
	a, err := mail.ParseAddress(local + "@" + ascii)
	if err != nil || a.Name != "" || a.Address != local+"@"+ascii {
		return "", false
	}
	return a.Address, true
}

func clipRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// ShowsRemote reports whether remote content from addr is always shown: its address or its domain (or a parent
// domain) is on RemoteSenders.
func (s Settings) ShowsRemote(addr string) bool {
	if len(s.RemoteSenders) == 0 {
		return false
	}
	key, ok := senderKey(strings.TrimSpace(addr))
	if !ok {
		return false
	}
	_, domain, _ := strings.Cut(key, "@")
	for _, e := range s.RemoteSenders {
		if e == key || e == domain || strings.HasSuffix(domain, "."+e) {
			return true
		}
	}
	return false
}

// zones caches loaded locations: time.LoadLocation reads and parses a file on every call, and the names come from
// every page view (a browser's cookie). Only names that load are cached, so the map is bounded by the tz database.
var zones sync.Map // name → *time.Location

// TimeZone loads an IANA time zone by name, refusing what is not one: "" and "Local" (the server's own zone, which
// says nothing about the user), over-long names, and anything time.LoadLocation does not find.
func TimeZone(name string) (*time.Location, bool) {
	if name == "" || name == "Local" || len(name) > maxZoneLength {
		return nil, false
	}
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location), true
	}
	for _, r := range name {
		// Zone names are ASCII letters, digits and "/_+-" (tz database Theory file); anything else is refused
		// before it reaches the file system.
		if !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("/_+-", r))) {
			return nil, false
		}
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, false
	}
	zones.Store(name, l)
	return l, true
}

// settingsColumns is the column list of every settings read, in scanSettings' order.
const settingsColumns = `issuer, subject, display_name, signature, time_zone, page_size, conversations, remote_senders, updated_at`

// The settings statements, written once with ? placeholders; Postgres runs them through dollar. The upsert works in
// both dialects (SQLite ≥ 3.24 and PostgreSQL ≥ 9.5 share ON CONFLICT … DO UPDATE with excluded).
const (
	selectSettingsSQL = `SELECT ` + settingsColumns + ` FROM settings WHERE issuer = ? AND subject = ?`
	upsertSettingsSQL = `INSERT INTO settings (` + settingsColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (issuer, subject) DO UPDATE SET display_name = excluded.display_name,
		signature = excluded.signature, time_zone = excluded.time_zone, page_size = excluded.page_size,
		conversations = excluded.conversations, remote_senders = excluded.remote_senders,
		updated_at = excluded.updated_at`
)

// settingsArgs checks st and returns upsertSettingsSQL's arguments, stamping UpdatedAt.
func (s *codec) settingsArgs(st *Settings) ([]any, error) {
	if st.Issuer == "" || st.Subject == "" {
		return nil, errors.New("store: settings need an owner")
	}
	if err := st.Check(); err != nil {
		return nil, err
	}
	st.UpdatedAt = s.now()
	conv := 0
	if st.Conversations {
		conv = 1
	}
	return []any{st.Issuer, st.Subject, st.DisplayName, st.Signature, st.TimeZone, st.PageSize, conv,
		strings.Join(st.RemoteSenders, "\n"), toNanos(st.UpdatedAt)}, nil
}

// scanSettings reads one row selected with settingsColumns.
func scanSettings(row rowScanner) (Settings, error) {
	var (
		st                Settings
		size, conv, stamp int64
		senders           string
	)
	if err := row.Scan(&st.Issuer, &st.Subject, &st.DisplayName, &st.Signature, &st.TimeZone, &size, &conv,
		&senders, &stamp); err != nil {
		return Settings{}, err
	}
	st.PageSize, st.Conversations, st.UpdatedAt = int(size), conv != 0, fromNanos(stamp)
	if senders != "" {
		st.RemoteSenders = strings.Split(senders, "\n")
	}
	return st, nil
}

// Settings returns one person's settings, or DefaultSettings when they never saved any.
func (s *SQLite) Settings(ctx context.Context, issuer, subject string) (Settings, error) {
	st, err := scanSettings(s.queryRow(ctx, selectSettingsSQL, issuer, subject))
	if errors.Is(err, sql.ErrNoRows) {
		return DefaultSettings(issuer, subject), nil
	}
	if err != nil {
		return Settings{}, fmt.Errorf("store: settings: %w", err)
	}
	return st, nil
}

// SaveSettings stores st whole, replacing what the person had. It checks st first (Settings.Check, which also
// normalises it) and returns the InvalidSettingsError unchanged, so a caller can show the problems.
func (s *SQLite) SaveSettings(ctx context.Context, st *Settings) error {
	args, err := s.settingsArgs(st)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, upsertSettingsSQL, args...); err != nil {
		return fmt.Errorf("store: save settings: %w", err)
	}
	return nil
}

// Settings returns one person's settings; see (*SQLite).Settings.
func (s *Postgres) Settings(ctx context.Context, issuer, subject string) (Settings, error) {
	st, err := scanSettings(s.pool.QueryRow(ctx, dollar(selectSettingsSQL), issuer, subject))
	if pgNoRows(err) {
		return DefaultSettings(issuer, subject), nil
	}
	if err != nil {
		return Settings{}, fmt.Errorf("store: settings: %w", err)
	}
	return st, nil
}

// SaveSettings stores st whole; see (*SQLite).SaveSettings.
func (s *Postgres) SaveSettings(ctx context.Context, st *Settings) error {
	args, err := s.settingsArgs(st)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, dollar(upsertSettingsSQL), args...); err != nil {
		return fmt.Errorf("store: save settings: %w", err)
	}
	return nil
}
