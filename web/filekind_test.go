package web

import "testing"

func TestKindOf(t *testing.T) {
	tests := []struct {
		name, mediaType, filename string
		want                      fileKind
	}{
		{"pdf", "application/pdf", "invoice.pdf", fileKind{"PDF document", "PDF", "pdf"}},
		{"pdf without a name", "application/pdf", "", fileKind{"PDF document", "PDF", "pdf"}},
		{"jpeg", "image/jpeg", "IMG_0001.JPG", fileKind{"JPEG image", "JPG", "image"}},
		{"png", "image/png", "chart.png", fileKind{"PNG image", "PNG", "image"}},
		{"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "cv.docx", fileKind{"Word document", "DOC", "doc"}},
		{"old word", "application/msword", "cv.doc", fileKind{"Word document", "DOC", "doc"}},
		{"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "q3.xlsx", fileKind{"Excel spreadsheet", "XLS", "sheet"}},
		{"zip", "application/zip", "photos.zip", fileKind{"ZIP archive", "ZIP", "archive"}},
		{"windows zip", "application/x-zip-compressed", "photos.zip", fileKind{"ZIP archive", "ZIP", "archive"}},
		{"calendar", "text/calendar", "invite.ics", fileKind{"Calendar invitation", "ICS", "calendar"}},
		{"forwarded mail", "message/rfc822", "Re: lunch.eml", fileKind{"Email message", "EML", "mail"}},
		// The type wins over the name: the label must not call an HTML file a PDF.
		{"type beats extension", "text/html", "statement.pdf", fileKind{"HTML document", "HTML", "text"}},
		// octet-stream is what many clients send for everything: the extension names it.
		{"octet-stream pdf", "application/octet-stream", "invoice.PDF", fileKind{"PDF document", "PDF", "pdf"}},
		{"octet-stream docx", "application/octet-stream", "cv.docx", fileKind{"Word document", "DOC", "doc"}},
		{"octet-stream unknown ext", "application/octet-stream", "drawing.dwg", fileKind{"DWG file", "DWG", "file"}},
		{"octet-stream no name", "application/octet-stream", "", fileKind{"File", "FILE", "file"}},
		{"unknown image", "image/x-icon", "favicon.ico", fileKind{"Image", "IMG", "image"}},
		{"unknown audio", "audio/flac", "song.flac", fileKind{"Audio", "AUD", "media"}},
		{"unknown type, odd ext", "application/x-foo", "a.tar.bz2", fileKind{"BZ2 file", "BZ2", "file"}},
		// An extension that is long or not alphanumeric is not shown as a badge (it is sender-controlled text).
		{"long ext", "application/x-foo", "a.something", fileKind{"File", "FILE", "file"}},
		{"odd ext", "application/x-foo", "a.p<f", fileKind{"File", "FILE", "file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := kindOf(tt.mediaType, tt.filename); got != tt.want {
				t.Errorf("kindOf(%q, %q) = %+v, want %+v", tt.mediaType, tt.filename, got, tt.want)
			}
		})
	}
	// Every extension maps onto a type the table knows, so that no lookup falls through to an empty kind.
	for ext, typ := range kindsByExt {
		if _, ok := kindsByType[typ]; !ok {
			t.Errorf("kindsByExt[%q] = %q, which kindsByType lacks", ext, typ)
		}
	}
	for typ, k := range kindsByType {
		if k.Label == "" || k.Badge == "" || len(k.Badge) > 4 || !kindClasses[k.Class] {
			t.Errorf("kindsByType[%q] = %+v: want a label, a badge of at most 4 characters and a known class", typ, k)
		}
	}
}

// kindClasses are the classes style.css colours.
var kindClasses = map[string]bool{"pdf": true, "image": true, "doc": true, "sheet": true, "slides": true,
	"archive": true, "text": true, "calendar": true, "mail": true, "media": true, "file": true}
