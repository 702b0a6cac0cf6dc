package web

import (
	"path"
	"strings"
)

// A fileKind is what the attachment list says about a file's type: a human label ("PDF document") instead of the
// media type ("application/pdf"), a short badge drawn in CSS ("PDF") instead of an emoji or icon font, which not
// every system has, and a CSS class from a fixed set that colours the badge.
type fileKind struct {
	Label, Badge, Class string
}

// kindsByType maps media types (lower case, without parameters, as mail.Part has them) onto kinds. The list covers
// what people actually attach; anything else falls back to the file name's extension (kindsByExt), then to "File".
var kindsByType = map[string]fileKind{
	"application/pdf": {"PDF document", "PDF", "pdf"},

	"image/jpeg":    {"JPEG image", "JPG", "image"},
	"image/pjpeg":   {"JPEG image", "JPG", "image"},
	"image/png":     {"PNG image", "PNG", "image"},
	"image/gif":     {"GIF image", "GIF", "image"},
	"image/webp":    {"WebP image", "WEBP", "image"},
	"image/svg+xml": {"SVG image", "SVG", "image"},
	"image/heic":    {"HEIC image", "HEIC", "image"},
	"image/tiff":    {"TIFF image", "TIFF", "image"},
	"image/bmp":     {"BMP image", "BMP", "image"},

	"application/msword": {"Word document", "DOC", "doc"},
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document": {"Word document", "DOC", "doc"},
	"application/vnd.oasis.opendocument.text":                                 {"OpenDocument text", "ODT", "doc"},
	"application/rtf":          {"Rich text document", "RTF", "doc"},
	"text/rtf":                 {"Rich text document", "RTF", "doc"},
	"application/vnd.ms-excel": {"Excel spreadsheet", "XLS", "sheet"},
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {"Excel spreadsheet", "XLS", "sheet"},
	"application/vnd.oasis.opendocument.spreadsheet":                    {"OpenDocument spreadsheet", "ODS", "sheet"},
	"text/csv":                      {"CSV spreadsheet", "CSV", "sheet"},
	"application/vnd.ms-powerpoint": {"PowerPoint presentation", "PPT", "slides"},
	"application/vnd.openxmlformats-officedocument.presentationml.presentation": {"PowerPoint presentation", "PPT", "slides"},
	"application/vnd.oasis.opendocument.presentation":                           {"OpenDocument presentation", "ODP", "slides"},

	"application/zip":              {"ZIP archive", "ZIP", "archive"},
	"application/x-zip-compressed": {"ZIP archive", "ZIP", "archive"},
	"application/gzip":             {"Gzip archive", "GZ", "archive"},
	"application/x-gzip":           {"Gzip archive", "GZ", "archive"},
	"application/x-tar":            {"Tar archive", "TAR", "archive"},
	"application/x-7z-compressed":  {"7-Zip archive", "7Z", "archive"},
	"application/vnd.rar":          {"RAR archive", "RAR", "archive"},
	"application/x-rar-compressed": {"RAR archive", "RAR", "archive"},

	"text/plain":       {"Text file", "TXT", "text"},
	"text/markdown":    {"Markdown text", "MD", "text"},
	"text/html":        {"HTML document", "HTML", "text"},
	"application/json": {"JSON file", "JSON", "text"},
	"application/xml":  {"XML file", "XML", "text"},
	"text/xml":         {"XML file", "XML", "text"},

	"text/calendar":                 {"Calendar invitation", "ICS", "calendar"},
	"application/ics":               {"Calendar invitation", "ICS", "calendar"},
	"text/vcard":                    {"Contact card", "VCF", "calendar"},
	"text/x-vcard":                  {"Contact card", "VCF", "calendar"},
	"message/rfc822":                {"Email message", "EML", "mail"},
	"message/global":                {"Email message", "EML", "mail"},
	"application/pgp-keys":          {"OpenPGP key", "KEY", "text"},
	"application/pgp-signature":     {"OpenPGP signature", "SIG", "text"},
	"application/pkcs7-signature":   {"S/MIME signature", "SIG", "text"},
	"application/x-pkcs7-signature": {"S/MIME signature", "SIG", "text"},

	"audio/mpeg":      {"MP3 audio", "MP3", "media"},
	"audio/ogg":       {"Ogg audio", "OGG", "media"},
	"audio/wav":       {"WAV audio", "WAV", "media"},
	"audio/x-wav":     {"WAV audio", "WAV", "media"},
	"video/mp4":       {"MP4 video", "MP4", "media"},
	"video/webm":      {"WebM video", "WEBM", "media"},
	"video/quicktime": {"QuickTime video", "MOV", "media"},
}

// kindsByExt names a file by its extension when the sender gave no useful type: many clients send everything as
// application/octet-stream.
var kindsByExt = map[string]string{
	"pdf": "application/pdf", "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
	"webp": "image/webp", "svg": "image/svg+xml", "heic": "image/heic", "tif": "image/tiff", "tiff": "image/tiff",
	"doc": "application/msword", "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
	"odt": "application/vnd.oasis.opendocument.text", "rtf": "application/rtf",
	"xls": "application/vnd.ms-excel", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
	"ods": "application/vnd.oasis.opendocument.spreadsheet", "csv": "text/csv",
	"ppt": "application/vnd.ms-powerpoint", "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
	"odp": "application/vnd.oasis.opendocument.presentation",
	"zip": "application/zip", "gz": "application/gzip", "tgz": "application/gzip", "tar": "application/x-tar",
	"7z": "application/x-7z-compressed", "rar": "application/vnd.rar",
	"txt": "text/plain", "md": "text/markdown", "json": "application/json", "xml": "application/xml",
	"ics": "text/calendar", "vcf": "text/vcard", "eml": "message/rfc822",
	"mp3": "audio/mpeg", "ogg": "audio/ogg", "wav": "audio/wav", "mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime",
}

// kindOf describes a file from its media type and, failing that, its name. The name only labels: what Postern
// serves and whether it can be viewed depend on the media type alone (handlePart).
func kindOf(mediaType, filename string) fileKind {
	if k, ok := kindsByType[mediaType]; ok {
		return k
	}
	ext := strings.ToLower(strings.TrimPrefix(path.Ext(filename), "."))
	if t, ok := kindsByExt[ext]; ok {
		return kindsByType[t]
	}
	major, _, _ := strings.Cut(mediaType, "/")
	switch major {
	case "image":
		return fileKind{"Image", "IMG", "image"}
	case "audio":
		return fileKind{"Audio", "AUD", "media"}
	case "video":
		return fileKind{"Video", "VID", "media"}
	}
	if n := len(ext); n > 0 && n <= 4 && isAlnum(ext) {
		up := strings.ToUpper(ext)
		return fileKind{up + " file", up, "file"}
	}
	return fileKind{"File", "FILE", "file"}
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
