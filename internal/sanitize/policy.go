package sanitize

import (
	"regexp"

	"github.com/microcosm-cc/bluemonday"
)

// The second pass: bluemonday allowlists, built once (a built Policy is safe for concurrent use). strictPolicy lets
// images come only from same-origin paths (our cid: part URLs) and data: raster images; remotePolicy adds http(s)
// images and table backgrounds, for a reader who asked to see remote content.
var (
	strictPolicy = newPolicy(false)
	remotePolicy = newPolicy(true)
)

var (
	// localOrData is an <img src> without remote content: a same-origin absolute path (not "//host" or "/\host")
	// or a raster data: URL.
	localOrData = regexp.MustCompile(`^(/[^/\\]|data:image/(png|gif|jpeg|webp);base64,)`)
	// localDataOrRemote adds absolute http(s) URLs.
	localDataOrRemote = regexp.MustCompile(`^(/[^/\\]|data:image/(png|gif|jpeg|webp);base64,|https?://)`)
	// link is an <a href>: absolute http(s) or mailto only, never relative (it would resolve against Postern).
	link        = regexp.MustCompile(`^(https?://|mailto:)`)
	remoteImage = regexp.MustCompile(`^https?://[^\s"'<>\\]+$`)
	number      = regexp.MustCompile(`^[0-9]{1,4}(%|px)?$`)
	colour      = regexp.MustCompile(`^#?[0-9A-Za-z]{1,20}$`)
	align       = regexp.MustCompile(`(?i)^(left|right|center|justify|top|middle|bottom|baseline|absmiddle|texttop)$`)
	fontFace    = regexp.MustCompile(`^[\w ,'"-]{1,100}$`)
	short       = regexp.MustCompile(`^[\pL\pN\s.,:;!?'"()\-_/@#&+*%=]{0,200}$`)
)

// allowedElements are the elements the output may contain: text formatting, tables, lists, images, links.
var allowedElements = []string{
	"a", "abbr", "acronym", "address", "article", "aside", "b", "bdi", "bdo", "big", "blockquote", "br",
	"caption", "center", "cite", "code", "col", "colgroup", "dd", "del", "details", "dfn", "div", "dl", "dt",
	"em", "figcaption", "figure", "font", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "i",
	"img", "ins", "kbd", "li", "main", "mark", "nav", "ol", "p", "pre", "q", "rp", "rt", "ruby", "s", "samp",
	"section", "small", "span", "strike", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
	"th", "thead", "time", "tr", "tt", "u", "ul", "var", "wbr",
}

// styleProperties are the inline CSS properties kept, each value checked by bluemonday's per-property handler.
// None of them takes a url(), so none can fetch anything; positioning (position, z-index) and display are left out,
// since they let a message draw over its own frame's other content and play visual tricks.
var styleProperties = []string{
	"color", "background-color",
	"font", "font-family", "font-size", "font-style", "font-weight", "font-variant",
	"text-align", "text-decoration", "text-indent", "text-transform", "letter-spacing", "word-spacing",
	"line-height", "white-space", "vertical-align", "direction", "word-break", "word-wrap", "overflow-wrap",
	"margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
	"padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
	"border", "border-top", "border-right", "border-bottom", "border-left",
	"border-color", "border-style", "border-width", "border-radius", "border-collapse", "border-spacing",
	"width", "height", "max-width", "min-width", "list-style-type", "table-layout", "float", "clear",
}

func newPolicy(remote bool) *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	p.AllowElements(allowedElements...)
	p.AllowAttrs("dir").Matching(bluemonday.Direction).Globally()
	p.AllowAttrs("lang").Matching(regexp.MustCompile(`^[a-zA-Z]{2,8}(-[a-zA-Z0-9]{1,8})*$`)).Globally()
	p.AllowAttrs("title").Matching(short).Globally()
	p.AllowAttrs("align").Matching(align).Globally()
	p.AllowAttrs("valign").Matching(align).OnElements("td", "th", "tr", "tbody", "thead", "tfoot", "col", "colgroup")
	p.AllowAttrs("width", "height").Matching(number).OnElements("img", "table", "td", "th", "col", "colgroup", "tr")
	p.AllowAttrs("bgcolor").Matching(colour).OnElements("table", "td", "th", "tr", "div")
	p.AllowAttrs("border", "cellpadding", "cellspacing").Matching(number).OnElements("table", "img")
	p.AllowAttrs("colspan", "rowspan").Matching(bluemonday.Integer).OnElements("td", "th")
	p.AllowAttrs("nowrap").OnElements("td", "th")
	p.AllowAttrs("scope").Matching(regexp.MustCompile(`^(row|col|rowgroup|colgroup)$`)).OnElements("th", "td")
	p.AllowAttrs("span").Matching(bluemonday.Integer).OnElements("col", "colgroup")
	p.AllowAttrs("color").Matching(colour).OnElements("font")
	p.AllowAttrs("face").Matching(fontFace).OnElements("font")
	p.AllowAttrs("size").Matching(regexp.MustCompile(`^[+-]?[0-7]$`)).OnElements("font")
	p.AllowAttrs("start").Matching(bluemonday.Integer).OnElements("ol")
	p.AllowAttrs("type").Matching(regexp.MustCompile(`^(1|a|A|i|I|disc|circle|square)$`)).OnElements("ol", "ul", "li")
	p.AllowAttrs("value").Matching(bluemonday.Integer).OnElements("li")
	p.AllowAttrs("open").Matching(regexp.MustCompile(`^(open)?$`)).OnElements("details")
	p.AllowAttrs("datetime").Matching(short).OnElements("time", "del", "ins")
	p.AllowAttrs("alt").Matching(bluemonday.Paragraph).OnElements("img")
	p.AllowStyles(styleProperties...).Globally()

	// URLs: parseable, http/https/mailto, data: only as raster images (bluemonday decodes the base64 to check).
	// Relative URLs pass this check because our cid: rewrites are same-origin paths; the regexps below then allow
	// them on <img src> only.
	p.RequireParseableURLs(true)
	p.AllowRelativeURLs(true)
	p.AllowURLSchemes("http", "https", "mailto")
	p.AllowDataURIImages()
	p.AllowAttrs("href").Matching(link).OnElements("a")
	p.AllowAttrs("target").Matching(regexp.MustCompile(`^_blank$`)).OnElements("a")
	p.AllowAttrs("rel").Matching(regexp.MustCompile(`^noopener noreferrer$`)).OnElements("a")
	p.RequireNoReferrerOnLinks(true)
	if remote {
		p.AllowAttrs("src").Matching(localDataOrRemote).OnElements("img")
		p.AllowAttrs("background").Matching(remoteImage).OnElements("table", "td", "th", "tr", "div")
	} else {
		p.AllowAttrs("src").Matching(localOrData).OnElements("img")
	}
	return p
}
