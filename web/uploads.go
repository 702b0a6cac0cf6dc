package web

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/mail"
)

// DefaultMaxUpload is the default Config.MaxUpload: 25 MiB, the message size limit of many mail servers.
const DefaultMaxUpload = 25 << 20

const (
	// maxComposeField bounds one text field of the compose form (the body of a long reply fits many times over).
	maxComposeField = 2 << 20
	// stashTTL is how long attachments wait for the form they came with to be sent again.
	stashTTL = 2 * time.Hour
)

// errTooBig marks a compose form whose body went over Config.MaxUpload.
var errTooBig = errors.New("web: compose form over the size limit")

// readComposeForm reads the compose form, streaming: text fields first (the template puts them before the file
// input, and browsers send fields in document order), then the files. A body over limit stops the read with
// errTooBig, and the text fields read so far are still returned, so that the form can be shown again with
// everything the user typed. The form may also come URL-encoded (no files).
func readComposeForm(w http.ResponseWriter, r *http.Request, limit int64) (url.Values, []mail.Attachment, error) {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "multipart/form-data" {
		err := r.ParseForm()
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return url.Values{}, nil, errTooBig
		}
		return r.PostForm, nil, err
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return url.Values{}, nil, err
	}
	vals := url.Values{}
	var files []mail.Attachment
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return vals, files, nil
		}
		if err != nil {
			return vals, nil, tooBig(err)
		}
		name := p.FormName()
		if name == "attach" {
			if p.FileName() == "" {
				// An empty file input still sends a part; there is nothing in it.
				_, _ = io.Copy(io.Discard, p)
				continue
			}
			data, err := io.ReadAll(p)
			if err != nil {
				return vals, nil, tooBig(err)
			}
			files = append(files, mail.Attachment{
				Filename:    cleanFilename(p.FileName()),
				ContentType: attachmentType(p.Header.Get("Content-Type"), p.FileName(), data),
				Data:        data,
			})
			continue
		}
		b, err := io.ReadAll(io.LimitReader(p, maxComposeField+1))
		if err != nil {
			return vals, nil, tooBig(err)
		}
		if len(b) > maxComposeField {
			return vals, nil, errTooBig
		}
		if name != "" {
			vals.Add(name, string(b))
		}
	}
}

func tooBig(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errTooBig
	}
	return err
}

// cleanFilename is mail.CleanFilename (the last path element of what the browser sent — old browsers send
// "C:\fakepath\x.pdf" — without controls, bidi overrides or zero-width characters), or "attachment" when nothing
// is left. Encoding it for the header (RFC 2231) is mail.Draft.Build's job.
func cleanFilename(name string) string {
	if name = mail.CleanFilename(name); name == "" {
		return "attachment"
	}
	return name
}

// attachmentType takes the browser's media type when it is well-formed and specific, else guesses from the name and
// then the content. Parameters are dropped: they come from the client and Build sets what it needs.
func attachmentType(declared, name string, data []byte) string {
	if mt, _, err := mime.ParseMediaType(declared); err == nil && mt != "application/octet-stream" && strings.Contains(mt, "/") {
		return mt
	}
	if mt, _, err := mime.ParseMediaType(mime.TypeByExtension(path.Ext(name))); err == nil && mt != "" {
		return mt
	}
	mt, _, _ := mime.ParseMediaType(http.DetectContentType(data))
	return mt
}

// uploadStash keeps the attachments of a compose form that has to be shown again (a mistyped address, a failed
// send, a resumed draft), so that the user does not have to pick the files again: the re-shown form carries only
// their ids. Entries belong to one grant and expire after stashTTL. Memory is bounded twice: one grant keeps at most
// perGrant bytes (its own oldest files go first), and the whole stash at most limit (the oldest files of anyone go
// first). So no user can fill the stash and block everyone's sending; the worst a flood does is make another user's
// re-shown form ask for a file again.
//
// It lives in memory: after a restart, or on another instance, an id is simply unknown and the form says which
// attachment to add again.
type uploadStash struct {
	mu       sync.Mutex
	items    map[string]*stashed
	size     int64
	limit    int64
	perGrant int64
}

type stashed struct {
	grant   string
	att     mail.Attachment
	expires time.Time
}

// keptFile is a stashed attachment as the compose form lists it.
type keptFile struct {
	ID, Name string
	Size     int64
}

func newUploadStash(maxUpload int64) *uploadStash {
	return &uploadStash{items: map[string]*stashed{}, limit: 4 * maxUpload, perGrant: 2 * maxUpload}
}

// put stores a copy of a for grant and returns its id; ok is false when the stash is full.
func (u *uploadStash) put(grant string, a mail.Attachment) (keptFile, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	for id, it := range u.items {
		if now.After(it.expires) {
			u.size -= int64(len(it.att.Data))
			delete(u.items, id)
		}
	}
	n := int64(len(a.Data))
	if n > u.perGrant {
		return keptFile{}, false
	}
	for u.grantSize(grant)+n > u.perGrant {
		u.evictOldest(grant)
	}
	for u.size+n > u.limit {
		u.evictOldest("")
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	u.items[id] = &stashed{grant: grant, att: a, expires: now.Add(stashTTL)}
	u.size += int64(len(a.Data))
	return keptFile{ID: id, Name: a.Filename, Size: int64(len(a.Data))}, true
}

// get returns the attachment id of grant, if it is still there.
func (u *uploadStash) get(grant, id string) (mail.Attachment, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	it, ok := u.items[id]
	if !ok || it.grant != grant || time.Now().After(it.expires) {
		return mail.Attachment{}, false
	}
	return it.att, true
}

// drop forgets the ids of grant once the message that carried them was sent or saved.
func (u *uploadStash) drop(grant string, ids []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, id := range ids {
		if it, ok := u.items[id]; ok && it.grant == grant {
			u.size -= int64(len(it.att.Data))
			delete(u.items, id)
		}
	}
}

// grantSize is the bytes stashed for grant. The caller holds u.mu.
func (u *uploadStash) grantSize(grant string) int64 {
	var n int64
	for _, it := range u.items {
		if it.grant == grant {
			n += int64(len(it.att.Data))
		}
	}
	return n
}

// evictOldest drops the oldest entry of grant, or of anyone when grant is "". The caller holds u.mu.
func (u *uploadStash) evictOldest(grant string) {
	var oldest string
	for id, it := range u.items {
		if (grant == "" || it.grant == grant) && (oldest == "" || it.expires.Before(u.items[oldest].expires)) {
			oldest = id
		}
	}
	if oldest == "" {
		return
	}
	u.size -= int64(len(u.items[oldest].att.Data))
	delete(u.items, oldest)
}
