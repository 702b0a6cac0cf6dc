package mailserver

import (
	"fmt"
	"mime"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
)

// People and services that write to the seeded account.
var (
	bjorn     = addr{"Björn Lindqvist", "bjorn@example.org"}
	carol     = addr{"Carol Nguyen", "carol@example.org"}
	dave      = addr{"Dave Okafor", "dave@example.org"}
	grete     = addr{"Grete Müller", "grete.mueller@example.de"}
	taro      = addr{"山田 太郎", "taro.yamada@example.jp"}
	forgejo   = addr{"Forgejo", "noreply@git.example.org"}
	backup    = addr{"Nightly Backup", "backup@ops.example.org"}
	weekly    = addr{"The Self-Hosted Weekly", "newsletter@selfhosted.example"}
	northwind = addr{"Northwind Hosting", "billing@northwind.example"}
)

// ago is a time before seedBase.
func ago(days, hours, minutes int) time.Time {
	return seedBase.Add(-time.Duration(days)*24*time.Hour - time.Duration(hours)*time.Hour - time.Duration(minutes)*time.Minute)
}

var (
	seen     = []imap.Flag{imap.FlagSeen}
	unread   = []imap.Flag(nil)
	starred  = []imap.Flag{imap.FlagSeen, imap.FlagFlagged}
	answered = []imap.Flag{imap.FlagSeen, imap.FlagAnswered}
)

// seedMessages returns the seeded mail of the account me, sorted by mailbox
// and arrival so that sequence order is date order.
func seedMessages(email string) []message {
	local, domain, _ := strings.Cut(email, "@")
	me := addr{displayName(local), email}
	var out []message
	out = append(out, inboxSingles(me, domain)...)
	out = append(out, thread(me)...)
	out = append(out, notifications(me)...)
	out = append(out, otherFolders(me)...)
	slices.SortStableFunc(out, func(a, b message) int {
		if c := strings.Compare(a.box, b.box); c != 0 {
			return c
		}
		return a.at.Compare(b.at)
	})
	return out
}

// displayName turns "alice.smith" into "Alice Smith".
func displayName(local string) string {
	f := strings.FieldsFunc(local, func(r rune) bool { return r == '.' || r == '_' || r == '-' || r == '+' })
	for i, w := range f {
		f[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(f, " ")
}

func inboxSingles(me addr, domain string) []message {
	first := strings.Fields(me.name)[0]
	juergen := mime.QEncoding.Encode("iso-8859-1", latin1String("Jürgen Weiß")) + " <juergen.weiss@example.de>"
	return []message{
		{
			box: "INBOX", at: ago(27, 0, 0), flags: seen,
			from: addr{"Postmaster", "postmaster@" + domain}, to: []addr{me},
			subject: "Welcome to your new mailbox", id: "welcome@" + domain,
			body: plain("Hi " + first + ",\n\nyour mailbox is ready. Sign in with your single sign-on account;\nno mail password is needed.\n\nFolders: Inbox, Drafts, Sent, Archive, Junk and Trash.\n\n-- \nThe postmaster\n"),
		},
		{
			box: "INBOX", at: ago(26, 3, 12), flags: seen,
			from: northwind, to: []addr{me},
			subject: "Your invoice INV-2026-1042 for October", id: "inv-2026-1042@northwind.example",
			body: multipart("mixed",
				alternative(
					"Hello "+first+",\n\nthank you for your payment. Invoice INV-2026-1042 (EUR 14.90) is attached,\nwith the usage report for October.\n\nNorthwind Hosting\n",
					`<p>Hello `+first+`,</p><p>thank you for your payment. Invoice <b>INV-2026-1042</b> (EUR&nbsp;14.90) is attached, with the usage report for October.</p><p>Northwind Hosting</p>`),
				attachment("application/pdf", "INV-2026-1042.pdf", tinyPDF("Northwind Hosting - Invoice INV-2026-1042 - EUR 14.90")),
				attachment("text/plain", "usage-2026-10.txt", []byte("service        hours   cost\r\nvps-small      744     9.90\r\nbackup-50g     744     5.00\r\n")),
			),
		},
		{
			box: "INBOX", at: ago(25, 1, 40), flags: []imap.Flag{imap.FlagSeen, imap.FlagFlagged, imap.FlagAnswered},
			from: grete, to: []addr{me},
			subject: "Grüße aus München – Übersicht für Q4", id: "q4-uebersicht@example.de",
			body: plain("Hallo " + first + ",\n\nanbei die Übersicht für das vierte Quartal. Die Umstellung auf OAUTHBEARER\nläuft in München seit zwei Wochen ohne Störungen.\n\n• Postfächer migriert: 214 von 230\n• Offene Punkte: Weiterleitungen, Abwesenheitsnotizen\n\nViele Grüße aus München\nGrete\n"),
		},
		{
			box: "INBOX", at: ago(24, 6, 5), flags: seen,
			from: taro, to: []addr{me},
			subject: "会議の議事録（11月第1週）", id: "gijiroku-1@example.jp",
			body: plain("山田です。\n\n先日の会議の議事録を共有します。\n\n1. メールサーバーの移行は12月第2週に実施\n2. OAUTHBEARER への切り替えを優先\n3. 次回の会議は11月27日（金）14時から\n\nよろしくお願いいたします。\n山田\n"),
		},
		{
			box: "INBOX", at: ago(18, 2, 0), flags: seen,
			from: grete, to: []addr{me},
			subject: "Re: Grüße aus München – Übersicht für Q4", id: "q4-uebersicht-2@example.de",
			inReplyTo: "q4-reply@example.test", refs: []string{"q4-uebersicht@example.de", "q4-reply@example.test"},
			body: plain("Danke für die schnelle Antwort! Die Weiterleitungen erledigen wir nächste Woche.\n\nGrete\n\n> Danke, Grete – sieht gut aus.\n"),
		},
		{
			box: "INBOX", at: ago(10, 4, 30), flags: seen,
			from: carol, to: []addr{me}, cc: []addr{bjorn, dave},
			subject: "Photos from the offsite", id: "offsite-photos@example.org",
			body: multipart("related",
				alternative(
					"Hi all,\n\nhere is the team badge we voted for at the offsite (see the image in the HTML version).\n\nCarol\n",
					`<html><body><p>Hi all,</p><p>here is the team badge we voted for at the offsite:</p><p><img src="cid:badge@example.org" alt="Team badge" width="64" height="64"></p><p>Carol</p></body></html>`),
				inline("image/png", "badge@example.org", "badge.png", tinyPNG()),
			),
		},
		{
			box: "INBOX", at: ago(9, 7, 15), flags: seen,
			rawFrom: juergen, to: []addr{me},
			rawSubject: mime.QEncoding.Encode("iso-8859-1", latin1String("Rückfrage zur Rechnung Nr. 2026-118")),
			id:         "rueckfrage-118@example.de",
			body:       latin1("Sehr geehrte Damen und Herren,\n\nzu Ihrer Rechnung Nr. 2026-118 habe ich eine Rückfrage: Der Betrag für die\nDomainverlängerung erscheint zweimal. Könnten Sie das bitte prüfen?\n\nMit freundlichen Grüßen\nJürgen Weiß\n"),
		},
		{
			box: "INBOX", at: ago(5, 1, 20), flags: unread,
			from: taro, to: []addr{me},
			rawSubject: iso2022jpWord("来週の予定について"), id: "yotei@example.jp",
			body: iso2022jp("お疲れさまです。山田です。\n\n来週の火曜日と水曜日は大阪に出張します。\n急ぎの件があればチャットでご連絡ください。\n\n山田 太郎\n"),
		},
		{
			box: "INBOX", at: ago(4, 5, 0), flags: answered,
			from: dave, to: []addr{me},
			subject: "Lunch on Friday?", id: "lunch-friday@example.org",
			body: plain("Hey " + first + ",\n\nthe new ramen place on Elm Street opens on Friday. 12:30?\n\nDave\n"),
		},
		{
			box: "INBOX", at: ago(3, 2, 10), flags: seen,
			from: carol, to: []addr{me, bjorn, dave},
			subject: "Invitation: Quarterly infrastructure review @ Thu 26 Nov 2026 14:00 (UTC)", id: "invite-qir@example.org",
			body: multipart("mixed",
				alternative(
					"Quarterly infrastructure review\nThursday 26 November 2026, 14:00-15:00 UTC\nRoom: Lovelace / video link in the invitation\n",
					`<h2>Quarterly infrastructure review</h2><p>Thursday 26 November 2026, 14:00–15:00 UTC<br>Room: Lovelace</p>`),
				attachment("text/calendar", "invite.ics", []byte(crlf("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//example.org//devstack//EN\nMETHOD:REQUEST\nBEGIN:VEVENT\nUID:invite-qir@example.org\nDTSTAMP:20261117064950Z\nDTSTART:20261126T140000Z\nDTEND:20261126T150000Z\nSUMMARY:Quarterly infrastructure review\nEND:VEVENT\nEND:VCALENDAR\n"))),
			),
		},
		{
			box: "INBOX", at: ago(2, 3, 45), flags: unread,
			from: bjorn, to: []addr{me},
			subject: "Slides for Thursday", id: "slides-thursday@example.org",
			body: multipart("mixed",
				plain("Hi,\n\ndraft slides for the review attached. Comments welcome before Wednesday.\n\nBjörn\n"),
				attachment("application/pdf", "review-slides-draft.pdf", tinyPDF("Quarterly infrastructure review - draft")),
			),
		},
		{
			box: "INBOX", at: ago(1, 8, 0), flags: seen,
			from: addr{"Authelia", "auth@" + domain}, to: []addr{me},
			subject: "New sign-in to your account", id: "signin-7731@" + domain,
			body: alternative(
				"A new sign-in to your account was recorded.\n\nWhen: 19 November 2026, 01:00 UTC\nWhere: 192.0.2.10 (Firefox on Linux)\n\nIf this was not you, reset your password.\n",
				`<p>A new sign-in to your account was recorded.</p><table><tr><td>When</td><td>19 November 2026, 01:00 UTC</td></tr><tr><td>Where</td><td>192.0.2.10 (Firefox on Linux)</td></tr></table><p>If this was not you, <a href="https://auth.example.test/reset-password">reset your password</a>.</p>`),
		},
		{
			box: "INBOX", at: ago(0, 3, 0), flags: unread,
			from: carol, to: []addr{me},
			subject: "Quick question about the IMAP pool", id: "pool-question@example.org",
			body: plain("Hi " + first + ",\n\nhow many IMAP sessions per user does Postern keep open? Stalwart 0.16 caps it\nat 16 per account and I want to be sure we stay well below.\n\nThanks,\nCarol\n"),
		},
	}
}

// thread is a twelve-message discussion in INBOX with two replies of the
// user in Sent, linked by Message-ID, In-Reply-To and References (RFC 5322
// section 3.6.4).
func thread(me addr) []message {
	const subject = "Migration plan for the mail cluster"
	steps := []struct {
		from  addr
		days  int
		hours int
		text  string
	}{
		{bjorn, 21, 6, "Hi all,\n\nhere is the plan for moving the mail cluster to Stalwart with SSO:\n1. stand up Stalwart next to Dovecot\n2. switch clients to OAUTHBEARER\n3. migrate mailboxes in batches of 20\n\nObjections by Friday?"},
		{carol, 21, 2, "Looks good. We need the refresh tokens to live longer than 90 minutes\nor webmail users get logged out at lunch."},
		{dave, 20, 20, "Agreed. I can raise refresh_token lifespan in Authelia to 30 days."},
		{me, 20, 8, "Thanks both. I'll take step 2 and write down what Stalwart expects in the SASL payload."},
		{bjorn, 19, 22, "Great. Note that Stalwart ignores the a= authzid; Dovecot needs it. Send it anyway."},
		{carol, 18, 3, "Batch 1 (20 mailboxes) migrated. Two users had filters that did not convert."},
		{dave, 17, 9, "Batch 2 done. IMAP logins now cost one userinfo call each; we should pool connections."},
		{bjorn, 15, 4, "Pooling is on the list. Also: after three failed AUTHENTICATEs Stalwart drops the connection."},
		{carol, 12, 6, "Batch 3 and 4 done. Only the shared mailboxes left."},
		{me, 11, 23, "Webmail pool is in review: four sessions per user, idle ones closed after five minutes."},
		{dave, 6, 5, "Shared mailboxes migrated. Dovecot can be switched off next week."},
		{bjorn, 2, 1, "Final step scheduled for Tuesday 08:00 UTC. Please be around."},
		{carol, 0, 20, "I'll be there. Backups verified this morning."},
		{dave, 0, 6, "Same here. Thanks everyone, this went smoothly."},
	}
	var out []message
	var refs []string
	prevText := ""
	inboxCount := 0
	for i, st := range steps {
		id := fmt.Sprintf("mailmigration-%02d@example.org", i+1)
		if st.from == me {
			id = fmt.Sprintf("mailmigration-%02d@%s", i+1, strings.SplitN(me.email, "@", 2)[1])
		}
		m := message{
			at:   ago(st.days, st.hours, 0),
			from: st.from,
			to:   []addr{bjorn, carol, dave, me},
			id:   id,
		}
		m.to = slices.DeleteFunc(m.to, func(a addr) bool { return a == st.from })
		m.subject = subject
		body := st.text + "\n\n" + strings.Fields(st.from.name)[0] + "\n"
		if i > 0 {
			m.subject = "Re: " + subject
			m.inReplyTo = refs[len(refs)-1]
			m.refs = slices.Clone(refs)
			body += "\n> " + strings.ReplaceAll(strings.TrimSpace(prevText), "\n", "\n> ") + "\n"
		}
		m.body = plain(body)
		if st.from == me {
			m.box, m.flags = "Sent", seen
		} else {
			m.box = "INBOX"
			inboxCount++
			switch {
			case inboxCount >= 11:
				m.flags = unread
			case inboxCount == 1:
				m.flags = starred
			case i+1 < len(steps) && steps[i+1].from == me:
				m.flags = answered
			default:
				m.flags = seen
			}
		}
		out = append(out, m)
		refs = append(refs, id)
		prevText = st.text
	}
	return out
}

// notifications are machine-written: newsletters (HTML only, with a remote
// tracking image), forge notifications (alternative) and backup reports.
func notifications(me addr) []message {
	var out []message
	for i, issue := range []int{210, 211, 212, 213} {
		flags := seen
		if issue == 213 {
			flags = unread
		}
		out = append(out, message{
			box: "INBOX", at: ago(27-7*i, 14, 0), flags: flags,
			from: weekly, to: []addr{me},
			subject: fmt.Sprintf("The Self-Hosted Weekly #%d", issue), id: fmt.Sprintf("weekly-%d@selfhosted.example", issue),
			extra: []string{"List-Unsubscribe: <https://selfhosted.example/unsubscribe?u=42>"},
			body: html(fmt.Sprintf(`<!DOCTYPE html><html><head><meta charset="utf-8"><style>body{font-family:sans-serif}</style></head><body>
<table width="600"><tr><td><h1>The Self-Hosted Weekly #%d</h1>
<h2>This week</h2><ul><li><a href="https://selfhosted.example/a/%d-1">Running your own IdP without tears</a></li>
<li><a href="https://selfhosted.example/a/%d-2">IMAP IDLE at scale</a></li><li><a href="https://selfhosted.example/a/%d-3">Backups you have actually restored</a></li></ul>
<p style="color:#888">You receive this because you subscribed. <a href="https://selfhosted.example/unsubscribe?u=42">Unsubscribe</a></p>
<img src="https://selfhosted.example/open.gif?u=42&amp;i=%d" width="1" height="1" alt="">
</td></tr></table></body></html>`, issue, issue, issue, issue, issue)),
		})
	}

	forge := []struct {
		days, hours int
		subject     string
		text        string
		flags       []imap.Flag
	}{
		{23, 4, "[infra/mail] Switch submission to OAUTHBEARER (#42)", "bjorn opened a pull request: Switch submission to OAUTHBEARER", seen},
		{22, 1, "Re: [infra/mail] Switch submission to OAUTHBEARER (#42)", "carol approved these changes.", seen},
		{16, 7, "[postern] Pool: close the least recently used idle session when full (#17)", "dave opened a pull request: Pool: close the least recently used idle session when full", seen},
		{11, 2, "[postern] CI failed on main (a1b2c3d)", "The workflow test failed on main: TestPoolMaxPerKey (timeout).", seen},
		{7, 9, "[infra/dns] Add MTA-STS record (#7)", "carol merged pull request #7.", seen},
		{1, 2, "[postern] Release v0.3.0", "v0.3.0 was published. Highlights: server-side token refresh, IMAP pool.", unread},
	}
	for i, f := range forge {
		url := fmt.Sprintf("https://git.example.org/n/%d", i+1)
		out = append(out, message{
			box: "INBOX", at: ago(f.days, f.hours, 30), flags: f.flags,
			from: forgejo, to: []addr{me},
			subject: f.subject, id: fmt.Sprintf("forge-%d@git.example.org", i+1),
			body: alternative(f.text+"\n\nView it on Forgejo: "+url+"\n",
				`<p>`+f.text+`</p><p><a href="`+url+`">View it on Forgejo</a></p>`),
		})
	}

	for d := 7; d >= 1; d-- {
		day := seedBase.AddDate(0, 0, -d)
		status, flags := "OK", seen
		text := "All 6 volumes backed up.\nSize: 41.2 GiB (+0.3 GiB)\nDuration: 12m04s\n"
		if d == 1 {
			status, flags = "FAILED", []imap.Flag{imap.FlagFlagged}
			text = "Volume mail-data: restic exited with status 1 (repository is locked).\n5 of 6 volumes backed up.\n"
		}
		out = append(out, message{
			box: "INBOX", at: time.Date(day.Year(), day.Month(), day.Day(), 3, 15, 0, 0, time.UTC), flags: flags,
			from: backup, to: []addr{me},
			subject: fmt.Sprintf("Backup report for %s: %s", day.Format("2006-01-02"), status),
			id:      fmt.Sprintf("backup-%s@ops.example.org", day.Format("20060102")),
			body:    plain(text),
		})
	}
	return out
}

func otherFolders(me addr) []message {
	first := strings.Fields(me.name)[0]
	myDomain := strings.SplitN(me.email, "@", 2)[1]
	return []message{
		// Sent (two more are in the thread).
		{
			box: "Sent", at: ago(24, 0, 0), flags: seen, from: me, to: []addr{grete},
			subject: "Re: Grüße aus München – Übersicht für Q4", id: "q4-reply@" + myDomain,
			inReplyTo: "q4-uebersicht@example.de", refs: []string{"q4-uebersicht@example.de"},
			body: plain("Danke, Grete – sieht gut aus.\n\n" + first + "\n"),
		},
		{
			box: "Sent", at: ago(4, 4, 0), flags: seen, from: me, to: []addr{dave},
			subject: "Re: Lunch on Friday?", id: "lunch-reply@" + myDomain,
			inReplyTo: "lunch-friday@example.org", refs: []string{"lunch-friday@example.org"},
			body: plain("12:30 works. See you there!\n\n> the new ramen place on Elm Street opens on Friday. 12:30?\n"),
		},
		// Drafts.
		{
			box: "Drafts", at: ago(0, 20, 0), flags: []imap.Flag{imap.FlagSeen, imap.FlagDraft}, from: me, to: []addr{carol},
			subject: "Notes for the quarterly review", id: "draft-qir@" + myDomain,
			body: plain("- mail migration: done\n- SSO for webmail: in progress\n- backups: fix restic lock\n"),
		},
		// Archive.
		{
			box: "Archive", at: ago(60, 0, 0), flags: seen, from: northwind, to: []addr{me},
			subject: "Your domain has been renewed", id: "renewal@northwind.example",
			body: plain("Your domain " + myDomain + " has been renewed until 2027-09-20.\n"),
		},
		{
			box: "Archive", at: ago(45, 0, 0), flags: seen, from: addr{"FOSS Conf", "tickets@fossconf.example"}, to: []addr{me},
			subject: "Your ticket for FOSS Conf 2026", id: "ticket-8812@fossconf.example",
			body: multipart("mixed",
				plain("Thanks for registering! Your ticket is attached.\n"),
				attachment("application/pdf", "ticket-8812.pdf", tinyPDF("FOSS Conf 2026 - Ticket 8812")),
			),
		},
		{
			box: "Archive", at: ago(40, 0, 0), flags: seen, from: bjorn, to: []addr{me},
			subject: "Kickoff: single sign-on for everything", id: "sso-kickoff@example.org",
			body: plain("Kickoff notes: Authelia as the IdP, Stalwart for mail, webmail via a small broker.\n"),
		},
		// Junk.
		{
			box: "Junk", at: ago(6, 0, 0), from: addr{"Prize Department", "winner@prizes.example"}, to: []addr{me},
			subject: "You have WON a free cruise!!!", id: "cruise-99@prizes.example",
			body: html(`<html><body style="background:yellow"><h1>CONGRATULATIONS!!!</h1><p><a href="http://prizes.example/claim">Claim now</a></p><script>alert(1)</script><img src="http://prizes.example/t.gif"></body></html>`),
		},
		{
			box: "Junk", at: ago(2, 0, 0), from: addr{"Accounts Payable", "ap@invoices.example"}, to: []addr{me},
			subject: "Overdue invoice – open the attachment", id: "overdue-1@invoices.example",
			body: multipart("mixed",
				plain("Please see the attached invoice and pay today.\n"),
				attachment("application/zip", "invoice.zip", []byte("PK\x03\x04 not really a zip file")),
			),
		},
		// Trash.
		{
			box: "Trash", at: ago(8, 0, 0), flags: seen, from: addr{"Parcel Service", "noreply@parcel.example"}, to: []addr{me},
			subject: "Your parcel is out for delivery", id: "parcel-5521@parcel.example",
			body: plain("Your parcel 5521 will be delivered today between 10:00 and 14:00.\n"),
		},
		// Projects.
		{
			box: "Projects", at: ago(30, 0, 0), flags: seen, from: carol, to: []addr{me},
			subject: "Postern roadmap (draft)", id: "roadmap@example.org",
			body: plain("v0.1 sign-in and inbox\nv0.2 compose and send\nv0.3 token refresh in the background\nv0.4 IMAP bridge for desktop clients\n"),
		},
		{
			box: "Projects", at: ago(14, 0, 0), flags: starred, from: bjorn, to: []addr{me},
			subject: "Design review notes: token keeper", id: "keeper-review@example.org",
			body: multipart("mixed",
				plain("Notes from today's review attached.\n"),
				attachment("text/markdown", "keeper-review.md", []byte(crlf("# Token keeper review\n\n- refresh is single-flight per grant\n- persist the new refresh token before using the access token\n- invalid_grant means sign in again\n"))),
			),
		},
		{
			box: "Projects", at: ago(9, 0, 0), flags: seen, from: dave, to: []addr{me},
			subject: "Load test results", id: "loadtest@example.org",
			body: multipart("mixed",
				plain("500 simulated users, 4 IMAP sessions each at most. Results attached.\n"),
				attachment("text/csv", "loadtest.csv", []byte(crlf("users,p50_ms,p99_ms,imap_logins\n100,38,120,100\n500,41,180,500\n"))),
			),
		},
		// Receipts.
		{
			box: "Receipts", at: ago(87, 0, 0), flags: seen, from: northwind, to: []addr{me},
			subject: "Your invoice INV-2026-0871 for August", id: "inv-2026-0871@northwind.example",
			body: multipart("mixed",
				html(`<p>Invoice <b>INV-2026-0871</b>: EUR&nbsp;14.90, paid.</p>`),
				attachment("application/pdf", "INV-2026-0871.pdf", tinyPDF("Northwind Hosting - Invoice INV-2026-0871")),
			),
		},
		{
			box: "Receipts", at: ago(56, 0, 0), flags: seen, from: northwind, to: []addr{me},
			subject: "Your invoice INV-2026-0955 for September", id: "inv-2026-0955@northwind.example",
			body: multipart("mixed",
				html(`<p>Invoice <b>INV-2026-0955</b>: EUR&nbsp;14.90, paid.</p>`),
				attachment("application/pdf", "INV-2026-0955.pdf", tinyPDF("Northwind Hosting - Invoice INV-2026-0955")),
			),
		},
		{
			box: "Receipts", at: ago(20, 0, 0), flags: seen, from: addr{"Codeberg e.V.", "donate@codeberg.example"}, to: []addr{me},
			subject: "Thank you for your donation", id: "donation-2026@codeberg.example",
			body: plain("We received your donation of EUR 25.00. Thank you for supporting free software hosting!\n"),
		},
	}
}

func latin1String(s string) string {
	enc, err := charmap.ISO8859_1.NewEncoder().String(s)
	if err != nil {
		panic(err)
	}
	return enc
}

// iso2022jpWord encodes s as one RFC 2047 B-encoded word in ISO-2022-JP, as
// Japanese mail clients traditionally do.
func iso2022jpWord(s string) string {
	enc, err := japanese.ISO2022JP.NewEncoder().String(s)
	if err != nil {
		panic(err)
	}
	return mime.BEncoding.Encode("ISO-2022-JP", enc)
}
