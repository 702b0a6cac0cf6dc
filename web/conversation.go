package web

// Conversations in the folder list, the conversation view, previous/next links in the reader, and search across all
// folders. The threading itself (RFC 5256) is mail's (mail/thread.go); this file only lays it out.

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/postern/postern/mail"
)

// conversationsFor says whether r's folder list groups messages by conversation. It is the one place the choice is read:
// the user's setting (on by default), which Server.plainList overrides for the benchmarks.
func (s *Server) conversationsFor(r *http.Request) bool {
	return !s.plainList && s.prefs(r).Conversations
}

// listOptions are the extras a folder page asks mail.Session.OverviewWith for.
func (s *Server) listOptions(r *http.Request) mail.ListOptions {
	return mail.ListOptions{Threads: s.conversationsFor(r), Snippets: !s.noSnippets}
}

// conversationPath is the URL of the conversation of message uid in box (any message of it will do).
func conversationPath(box string, uid uint32) string {
	return "/conv/" + url.PathEscape(box) + "/" + strconv.FormatUint(uint64(uid), 10)
}

// conversationRows turns a page of messages into one row per conversation: the newest message's date and subject,
// everyone who wrote (or, in Sent, was written to), a count, unread when any message is. A row of one message
// opens the reader as before; a longer one opens the conversation view. The checkbox selects every message of the
// conversation on the page.
func conversationRows(p *mailboxPage, sums []mail.Summary, threads []mail.Thread) []listRow {
	var out []listRow
	for _, c := range mail.Conversations(sums, threads) {
		latest := c.Latest()
		row := listRow{Summary: latest, Count: c.Count}
		var who []mail.Address
		var uids []string
		for i := len(c.Messages) - 1; i >= 0; i-- {
			m := c.Messages[i]
			uids = append(uids, strconv.FormatUint(uint64(m.UID), 10))
			if !m.Seen {
				row.Seen = false
			}
			row.Flagged = row.Flagged || m.Flagged
			row.HasAttachment = row.HasAttachment || m.HasAttachment
			people := m.From
			if p.InSent() {
				people = m.To
			}
			for _, a := range people {
				if !slices.ContainsFunc(who, func(b mail.Address) bool { return strings.EqualFold(a.Email, b.Email) }) {
					who = append(who, a)
				}
			}
		}
		row.Unread = c.Unread()
		row.Seen = row.Unread == 0
		row.Who = who
		row.UIDs = strings.Join(uids, ",")
		row.URL = messagePath(p.Box, latest.UID)
		if c.Count > 1 {
			// The view opens the oldest unread message (else the newest); the fragment scrolls to it.
			open := latest.UID
			for _, m := range c.Messages {
				if !m.Seen {
					open = m.UID
					break
				}
			}
			row.URL = conversationPath(p.Box, latest.UID) + "#c-" + strconv.FormatUint(uint64(open), 10)
		}
		if p.InDrafts() {
			row.URL = "/compose?draft=" + strconv.FormatUint(uint64(latest.UID), 10)
		}
		out = append(out, row)
	}
	return out
}

// conversationPage is the data of templates/conversation.html.
type conversationPage struct {
	pageBase
	Box, BoxURL, BoxLabel string
	Subject               string
	Messages              []convMessage
	// NewerURL and OlderURL are the next conversations of the folder, "" at either end.
	NewerURL, OlderURL string
}

// convMessage is one message of the conversation view, rendered as the reader renders it.
type convMessage struct {
	Msg     *mail.Message
	Ref     string
	URL     string
	DateISO string
	Open    bool
	Snippet string
	Text    []textBlock
	// FrameURL is the sandboxed HTML document (see message.go), "" when the message is shown as text.
	FrameURL    string
	Attachments []partLink
}

// handleConversation shows a conversation oldest first, the first unread message (or the newest) open and the others
// folded in <details>, which works without JavaScript. Every message is rendered as the reader does (text with
// links, or the sandboxed HTML frame of message.go's security model), and opening the conversation marks it read.
// errSingleMessage ends handleConversation's mail work early: the conversation is one message.
var errSingleMessage = errors.New("web: a conversation of one message")

func (s *Server) handleConversation(w http.ResponseWriter, r *http.Request) error {
	box, uid, err := msgTarget(r)
	if err != nil {
		return err
	}
	var (
		rows          []mail.Summary
		msgs          []*mail.Message
		boxes         []mail.Mailbox
		newer, older  uint32
		unread        []uint32
		maxViewedMsgs = 30
	)
	addr, err := s.withMail(r.Context(), grantID(r), func(ms *mail.Session) error {
		var err error
		if rows, err = ms.ThreadOf(r.Context(), box, uid); err != nil {
			return err
		}
		if len(rows) == 1 {
			return errSingleMessage
		}
		if len(rows) > maxViewedMsgs {
			rows = rows[len(rows)-maxViewedMsgs:]
		}
		var uids []uint32
		for _, m := range rows {
			uids = append(uids, m.UID)
			msg, err := ms.Message(r.Context(), box, m.UID)
			if err != nil {
				return err
			}
			msgs = append(msgs, msg)
			if !msg.Seen {
				unread = append(unread, m.UID)
			}
		}
		if len(unread) > 0 && sameOriginView(r) {
			if err := ms.SetFlag(r.Context(), box, unread, mail.FlagSeen, true); err != nil {
				s.log(r).Warn("mark seen", slog.Any("err", err))
			}
		}
		if newer, older, err = ms.Neighbours(r.Context(), box, uids); err != nil {
			return err
		}
		boxes, err = ms.Mailboxes(r.Context())
		return err
	})
	if errors.Is(err, errSingleMessage) {
		// A conversation of one is shown as the message it is, as the list links it (reached by Newer/Older).
		http.Redirect(w, r, messagePath(box, uid), http.StatusSeeOther)
		return nil
	}
	if err != nil {
		return readError(err, box)
	}
	page := conversationPage{
		pageBase: s.base(r, subjectOr(msgs[0].Subject)),
		Box:      box,
		BoxURL:   mailboxURL(box),
		BoxLabel: boxLabel(box),
		Subject:  msgs[0].Subject,
	}
	page.User = addr
	page.Folders = folderLinks(boxes, box)
	if newer != 0 {
		page.NewerURL = conversationPath(box, newer)
	}
	if older != 0 {
		page.OlderURL = conversationPath(box, older)
	}
	open := len(msgs) - 1
	if len(unread) > 0 {
		for i, m := range msgs {
			if m.UID == unread[0] {
				open = i
				break
			}
		}
	}
	for i, m := range msgs {
		cm := convMessage{Msg: m, Ref: box + "/" + strconv.FormatUint(uint64(m.UID), 10), URL: messagePath(box, m.UID), Open: i == open}
		if !m.Date.IsZero() {
			cm.DateISO = m.Date.Format("2006-01-02T15:04:05Z07:00")
		}
		switch {
		case m.Malformed:
			cm.Text = []textBlock{{Segs: []textSeg{{Text: m.Text}}}}
		case m.HTML != "":
			cm.FrameURL = cm.URL + "/html"
		default:
			cm.Text = textBlocks(m.Text)
		}
		cm.Snippet = mail.SnippetOf(m.Text)
		cm.Attachments = attachmentLinks(cm.URL, m.Attachments)
		page.Messages = append(page.Messages, cm)
	}
	s.render(w, r, http.StatusOK, "conversation", &page)
	return nil
}

// handleNeighbour follows the reader's "Newer"/"Older" link: it finds the message (or conversation) next to uid in
// the folder's arrival order and redirects there, or back to the folder at either end. Asking here rather than on
// every message page keeps the page at one round trip.
func (s *Server) handleNeighbour(w http.ResponseWriter, r *http.Request) error {
	box, uid, err := msgTarget(r)
	if err != nil {
		return err
	}
	var newer, older uint32
	if _, err := s.withMail(r.Context(), grantID(r), func(ms *mail.Session) error {
		var err error
		newer, older, err = ms.Neighbours(r.Context(), box, []uint32{uid})
		return err
	}); err != nil {
		return readError(err, box)
	}
	next := older
	if strings.HasSuffix(r.URL.Path, "/newer") {
		next = newer
	}
	to := mailboxURL(box)
	if next != 0 {
		to = messagePath(box, next)
		if s.conversationsFor(r) {
			to = conversationPath(box, next)
		}
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// searchAllFolders runs the search in every selectable folder and shows the newest n matches of all of them by
// date, each row naming its folder. There is no "Older" page: the results are the newest matches, and the total
// says how many there were.
func searchAllFolders(ctx context.Context, ms *mail.Session, boxes []mail.Mailbox, qs []mail.Query, n int) ([]folderHit, uint32, error) {
	var (
		hits  []folderHit
		total uint32
	)
	for _, b := range boxes {
		if b.NoSelect {
			continue
		}
		p, err := searchAny(ctx, ms, b.Name, qs, 0, n)
		if err != nil {
			return nil, 0, err
		}
		total += p.Total
		for _, m := range p.Summaries {
			hits = append(hits, folderHit{Box: b.Name, Summary: m})
		}
	}
	slices.SortStableFunc(hits, func(a, b folderHit) int { return b.Summary.Date.Compare(a.Summary.Date) })
	if len(hits) > n {
		hits = hits[:n]
	}
	return hits, total, nil
}

// folderHit is a search result with its folder.
type folderHit struct {
	Box string
	mail.Summary
}
