package web

// Times as the reader reads them (issue 15): in their own time zone, and in the list relative to today. The zone is
// the user's setting if they chose one, else the browser's, which app.js puts in the postern_tz cookie
// (Intl.DateTimeFormat().resolvedOptions().timeZone), else UTC. The cookie is only a hint from the client: it is
// checked like the setting (store.TimeZone: a real IANA name, loaded from the tz database) and otherwise ignored.

import (
	"html/template"
	"net/http"
	"time"

	"github.com/postern/postern/internal/store"
)

// tzCookie carries the browser's IANA time zone name; app.js sets it, script-free browsers show UTC or the setting.
const tzCookie = "postern_tz"

// browserZone is the zone the postern_tz cookie names, nil when it is absent or not a known zone.
func browserZone(r *http.Request) *time.Location {
	c, err := r.Cookie(tzCookie)
	if err != nil {
		return nil
	}
	loc, ok := store.TimeZone(c.Value)
	if !ok {
		return nil
	}
	return loc
}

// clock formats times for one reader: in their zone, relative to now. The zero clock formats in UTC against the
// real time. Templates reach it as $.Clock (every page's pageBase has one).
type clock struct {
	loc *time.Location
	now time.Time
}

func (c clock) zone() *time.Location {
	if c.loc == nil {
		return time.UTC
	}
	return c.loc
}

func (c clock) today() time.Time {
	if c.now.IsZero() {
		return time.Now().In(c.zone())
	}
	return c.now.In(c.zone())
}

// ZoneName is the reader's zone as the pages name it: "Europe/Berlin", "UTC".
func (c clock) ZoneName() string { return c.zone().String() }

// Short is a list row's time: "14:05" today, "Yesterday", the weekday within the last week ("Mon"), "3 Mar" this
// year, "3 Mar 2025" before. A time in the future (a sender's clock ahead) gets its date, never a weekday that would
// read as past.
func (c clock) Short(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	now := c.today()
	t = t.In(c.zone())
	day := func(x time.Time) time.Time { return time.Date(x.Year(), x.Month(), x.Day(), 0, 0, 0, 0, c.zone()) }
	// Whole days between the two dates, by calendar, so that a DST change (a 23- or 25-hour day) does not count.
	days := int(day(now).Sub(day(t)).Round(24*time.Hour) / (24 * time.Hour))
	switch {
	case days == 0:
		return t.Format("15:04")
	case days == 1:
		return "Yesterday"
	case days > 1 && days < 7:
		return t.Format("Mon")
	case t.Year() == now.Year():
		return t.Format("2 Jan")
	default:
		return t.Format("2 Jan 2006")
	}
}

// Long is a time in full, with the zone by name: "Thu, 3 Dec 2026 14:05 (Europe/Berlin)", never a bare "+0000".
func (c clock) Long(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(c.zone()).Format("Mon, 2 Jan 2006 15:04") + " (" + c.ZoneName() + ")"
}

// List is Short in a <time> element whose title is Long: the list shows "Yesterday", hovering shows the moment.
func (c clock) List(t time.Time) template.HTML {
	if t.IsZero() {
		return ""
	}
	return timeElement(t, c.Long(t), c.Short(t))
}

// Stamp is Long in a <time> element, for the message header and the account and devices pages.
func (c clock) Stamp(t time.Time) template.HTML {
	if t.IsZero() {
		return ""
	}
	return timeElement(t, "", c.Long(t))
}

// Since is Stamp, or "never" for the zero time (a device not used yet).
func (c clock) Since(t time.Time) template.HTML {
	if t.IsZero() {
		return "never"
	}
	return c.Stamp(t)
}

func timeElement(t time.Time, title, body string) template.HTML {
	s := `<time datetime="` + t.UTC().Format(time.RFC3339) + `"`
	if title != "" {
		s += ` title="` + template.HTMLEscapeString(title) + `"`
	}
	return template.HTML(s + ">" + template.HTMLEscapeString(body) + "</time>")
}
