package web

import (
	"container/list"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
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

const (
	// maxFormFiles bounds the attachments of one compose form. Mail clients rarely allow more than a few dozen, and
	// each file is a stash entry and a MIME part to build.
	maxFormFiles = 32
	// maxFormParts bounds the parts of one compose form, files and fields together (a resumed form repeats "keep"
	// once per kept file), so that a body of tiny parts cannot make the server do unbounded work.
	maxFormParts = 4 * maxFormFiles
)

// formError is a compose form refused for a reason the user can act on; Msg is safe to show.
type formError struct{ Msg string }

func (e *formError) Error() string { return "web: compose form: " + e.Msg }

// formErrorText is the message of a *formError in err's chain.
func formErrorText(err error) string {
	var fe *formError
	if errors.As(err, &fe) {
		return fe.Msg
	}
	return ""
}

// readComposeForm reads the compose form, streaming: text fields first (the template puts them before the file
// input, and browsers send fields in document order), then the files. A body over limit stops the read with
// errTooBig, and the text fields read so far are still returned, so that the form can be shown again with
// everything the user typed. Too many parts or files, or a file whose name cannot be read, stop it with a
// *formError. The form may also come URL-encoded (no files).
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
	for parts := 1; ; parts++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			return vals, files, nil
		}
		if err != nil {
			return vals, nil, tooBig(err)
		}
		if parts > maxFormParts {
			return vals, nil, &formError{Msg: "This form has too many parts to be read. Your text is kept below; please attach your files again."}
		}
		name, filename, err := partNames(p)
		if err != nil {
			// A part the browser labelled in a way that does not parse would otherwise vanish without a word
			// (multipart.Part.FormName returns ""): a file the user attached must never silently go missing.
			return vals, nil, &formError{Msg: "The name of an attached file could not be read. Your text is kept below; please rename the file (plain letters and digits are safest) and attach it again."}
		}
		if name == "attach" {
			data, err := io.ReadAll(p)
			if err != nil {
				return vals, nil, tooBig(err)
			}
			if filename == "" {
				if len(data) > 0 {
					return vals, nil, &formError{Msg: "An attached file came without a name. Your text is kept below; please attach it again."}
				}
				// An empty file input still sends a part; there is nothing in it.
				continue
			}
			if len(files) == maxFormFiles {
				return vals, nil, &formError{Msg: fmt.Sprintf("At most %d files can be attached to one message. Your text is kept below; attach fewer files, or put them in an archive.", maxFormFiles)}
			}
			files = append(files, mail.Attachment{
				Filename:    cleanFilename(filename),
				ContentType: attachmentType(p.Header.Get("Content-Type"), filename, data),
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

// partNames parses a form part's Content-Disposition (RFC 7578 section 4.2) into its field name and file name. An
// error means the header is there but does not parse, or names a file in a form that could not be decoded (a
// filename* with a broken RFC 2231 encoding, which mime.ParseMediaType drops without an error).
func partNames(p *multipart.Part) (name, filename string, err error) {
	cd := p.Header.Get("Content-Disposition")
	if cd == "" {
		return "", "", nil
	}
	disp, params, err := mime.ParseMediaType(cd)
	if err != nil {
		return "", "", err
	}
	if disp != "form-data" {
		return "", "", nil
	}
	filename = params["filename"]
	if filename == "" && strings.Contains(strings.ToLower(cd), "filename*") {
		return "", "", errors.New("web: undecodable filename*")
	}
	if filename != "" {
		// As multipart.Part.FileName does: only the last path element counts (RFC 7578 section 4.2).
		filename = filepath.Base(filename)
	}
	return params["name"], filename, nil
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
// their ids. An entry is readable only with the grant that stored it, and expires after stashTTL.
//
// Bounds, so that no user can fill the stash, slow it down, or block anyone else's sending:
//   - one user (all their grants together: every sign-in is a new grant) keeps at most perUser bytes and
//     maxStashPerUser files; over either, that user's own oldest files go first;
//   - the whole stash keeps at most limit bytes and maxStashTotal files; over either, the oldest files of anyone
//     go first, so the worst a flood does is make another user's re-shown form ask for a file again;
//   - every operation is O(1) (amortised for expiry): entries sit in two insertion-ordered lists, one for the whole
//     stash and one per user, and since every entry lives the same stashTTL, insertion order is expiry order. The
//     lock is never held across a scan of the entries.
//
// It lives in memory: after a restart, or on another instance, an id is simply unknown and the form says which
// attachment to add again.
type uploadStash struct {
	mu       sync.Mutex
	items    map[string]*stashed
	all      list.List // of *stashed, oldest first
	users    map[string]*userStash
	size     int64
	limit    int64
	perUser  int64
	maxUser  int
	maxTotal int
	now      func() time.Time
}

type userStash struct {
	files list.List // of *stashed, oldest first
	size  int64
}

type stashed struct {
	id, user, grant string
	att             mail.Attachment
	expires         time.Time
	inAll, inUser   *list.Element
}

const (
	// maxStashPerUser bounds one user's stashed files whatever their size: zero-byte files cost no bytes but do cost
	// memory and bookkeeping. It is twice maxFormFiles, so that a user can fix one form while another waits.
	maxStashPerUser = 2 * maxFormFiles
	// maxStashTotal bounds the files of all users together.
	maxStashTotal = 20000
)

// keptFile is a stashed attachment as the compose form lists it.
type keptFile struct {
	ID, Name string
	Size     int64
}

func newUploadStash(maxUpload int64) *uploadStash {
	return &uploadStash{
		items: map[string]*stashed{}, users: map[string]*userStash{},
		limit: 4 * maxUpload, perUser: 2 * maxUpload, maxUser: maxStashPerUser, maxTotal: maxStashTotal,
		now: time.Now,
	}
}

// put stores a copy of a for user, readable with grant, and returns its id; ok is false when a is over the per-user
// bound on its own.
func (u *uploadStash) put(user, grant string, a mail.Attachment) (keptFile, bool) {
	n := int64(len(a.Data))
	if n > u.perUser || n > u.limit {
		return keptFile{}, false
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])

	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	u.expire(now)
	us := u.users[user]
	if us == nil {
		us = &userStash{}
		u.users[user] = us
	}
	for us.files.Len() > 0 && (us.size+n > u.perUser || us.files.Len() >= u.maxUser) {
		u.remove(us.files.Front().Value.(*stashed))
	}
	for u.all.Len() > 0 && (u.size+n > u.limit || u.all.Len() >= u.maxTotal) {
		u.remove(u.all.Front().Value.(*stashed))
	}
	// remove drops a user's record with its last file; this user is about to have one again.
	u.users[user] = us
	it := &stashed{id: id, user: user, grant: grant, att: a, expires: now.Add(stashTTL)}
	it.inAll = u.all.PushBack(it)
	it.inUser = us.files.PushBack(it)
	u.items[id] = it
	u.size += n
	us.size += n
	return keptFile{ID: id, Name: a.Filename, Size: n}, true
}

// get returns the attachment id of grant, if it is still there.
func (u *uploadStash) get(grant, id string) (mail.Attachment, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	it, ok := u.items[id]
	if !ok || it.grant != grant || !u.now().Before(it.expires) {
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
			u.remove(it)
		}
	}
}

// count reports the files stashed for user and in all.
func (u *uploadStash) count(user string) (mine, all int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if us := u.users[user]; us != nil {
		mine = us.files.Len()
	}
	return mine, u.all.Len()
}

// expire drops entries past their time, oldest first, stopping at the first live one. The caller holds u.mu.
func (u *uploadStash) expire(now time.Time) {
	for u.all.Len() > 0 {
		it := u.all.Front().Value.(*stashed)
		if now.Before(it.expires) {
			return
		}
		u.remove(it)
	}
}

// remove unlinks one entry in O(1). The caller holds u.mu.
func (u *uploadStash) remove(it *stashed) {
	n := int64(len(it.att.Data))
	u.all.Remove(it.inAll)
	delete(u.items, it.id)
	u.size -= n
	if us := u.users[it.user]; us != nil {
		us.files.Remove(it.inUser)
		us.size -= n
		if us.files.Len() == 0 {
			delete(u.users, it.user)
		}
	}
}
