package sanitize

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Layout is what the sanitiser learns, in the same pass, about how the message will lay out: enough for the page
// that frames it to size the frame without reading anything from it. The frame runs no script and has an opaque
// origin, so it cannot report its height, and the page must not be able to read it; an estimate from the server is
// the one source that keeps both walls. It assumes the frame's own stylesheet (FrameCSS): 15 px text, line-height
// 1.5, 16 px padding.
type Layout struct {
	// Blocks holds the number of characters of each run of text that starts on a line of its own (a paragraph, a
	// table cell, the text after a <br>); a run of 0 is an empty line.
	Blocks []int
	// Images holds the width and height attributes of each image (0 when absent).
	Images [][2]int
	// Gaps counts the block elements with a vertical margin (paragraphs, headings, lists, quotes, rules).
	Gaps int
	// Colored is set when the message sets its own colours (bgcolor, color, text attributes, or color and
	// background in inline style): such a message is shown on light "paper" whatever the reader's theme, since
	// dark text meant for white would vanish on a dark background.
	Colored bool
}

// Geometry of FrameCSS, in CSS pixels.
const (
	framePad    = 16
	lineHeight  = 23   // 15 px × 1.5, rounded up
	charWidth   = 7.6  // an average glyph of a sans-serif face at 15 px
	gapHeight   = 15   // 1em of margin between blocks, once margins collapse
	imageAssume = 150  // an image with no height attribute
	minHeight   = 96   // two lines and the padding: the frame never collapses to a sliver
	maxHeight   = 6000 // beyond this the frame scrolls on its own rather than making the page absurdly long
)

// HeightAt estimates the height in CSS pixels of the document at a frame width of width CSS pixels. The estimate
// leans high by a line, since the cost of under-estimating is a scroll bar inside the frame.
func (l Layout) HeightAt(width int) int {
	inner := max(width-2*framePad, 100)
	perLine := max(int(float64(inner)/charWidth), 10)
	// The last block's margin is none (FrameCSS: p:last-child), hence one gap less.
	h := 2*framePad + lineHeight + max(l.Gaps-1, 0)*gapHeight
	for _, n := range l.Blocks {
		h += max(1, (n+perLine-1)/perLine) * lineHeight
	}
	for _, im := range l.Images {
		w, ih := im[0], im[1]
		switch {
		case ih == 0:
			ih = imageAssume
		case w > inner:
			ih = ih * inner / w // max-width: 100%; height: auto
		}
		h += ih
	}
	return min(max(h, minHeight), maxHeight)
}

// FrameCSS is the stylesheet of the document the frame shows, the one HeightAt assumes: a readable sans-serif base
// (a message that names its own fonts keeps them) and, for a message that sets no colours, the reader's dark theme.
// A message that sets its own colours keeps the light paper it was designed on (class "paper" on the root), so that
// dark text on an assumed white background stays legible; the page draws that paper as a card.
const FrameCSS = `:root{color-scheme:light dark}:root.paper{color-scheme:light}` +
	`body{margin:0;padding:16px;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;` +
	`overflow-wrap:break-word;background:#fff;color:#1d1f21}` +
	`a{color:#1f5fbf}img{max-width:100%;height:auto}table{max-width:100%}` +
	`p{margin:0 0 1em}p:last-child{margin-bottom:0}blockquote{margin:0 0 1em;padding-left:.75em;border-left:3px solid #dcdfe3;color:#5c6166}` +
	`pre{white-space:pre-wrap}` +
	`@media (prefers-color-scheme:dark){:root:not(.paper) body{background:#1e2125;color:#e6e7e8}` +
	`:root:not(.paper) a{color:#7fb0ff}:root:not(.paper) blockquote{border-color:#33373c;color:#a2a8ae}}`

// blockStarts are the elements whose content starts on a line of its own.
var blockStarts = map[atom.Atom]bool{
	atom.P: true, atom.Div: true, atom.Li: true, atom.Tr: true, atom.Td: true, atom.Th: true, atom.Table: true,
	atom.H1: true, atom.H2: true, atom.H3: true, atom.H4: true, atom.H5: true, atom.H6: true,
	atom.Blockquote: true, atom.Pre: true, atom.Ul: true, atom.Ol: true, atom.Dl: true, atom.Dt: true, atom.Dd: true,
	atom.Center: true, atom.Section: true, atom.Article: true, atom.Header: true, atom.Footer: true,
	atom.Figure: true, atom.Figcaption: true, atom.Address: true, atom.Hr: true, atom.Caption: true,
	atom.Main: true, atom.Nav: true, atom.Aside: true, atom.Details: true, atom.Summary: true,
}

// gapped are the block elements with a vertical margin in the frame's stylesheet or the browser's.
var gapped = map[atom.Atom]bool{
	atom.P: true, atom.H1: true, atom.H2: true, atom.H3: true, atom.H4: true, atom.H5: true, atom.H6: true,
	atom.Ul: true, atom.Ol: true, atom.Blockquote: true, atom.Hr: true, atom.Dl: true, atom.Pre: true,
}

// layoutOf measures the cleaned tree under n, without recursion (the tree may be deep). Table cells in one row are
// counted as if stacked, which over-estimates multi-column layouts: a frame a little too tall beats one that hides
// text behind a scroll bar.
func layoutOf(n *html.Node) Layout {
	var (
		l    Layout
		run  int
		open bool // the current run has begun (text seen, or a <br> that makes an empty line)
	)
	flush := func() {
		if open {
			l.Blocks = append(l.Blocks, run)
		}
		run, open = 0, false
	}
	type frame struct {
		n     *html.Node
		leave bool
	}
	stack := []frame{{n: n}}
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		x := f.n
		if f.leave {
			flush()
			continue
		}
		switch x.Type {
		case html.TextNode:
			if t := strings.Join(strings.Fields(x.Data), " "); t != "" {
				if x.Parent != nil && x.Parent.DataAtom == atom.Pre {
					for i, line := range strings.Split(x.Data, "\n") {
						if i > 0 {
							flush()
						}
						run += utf8.RuneCountInString(line)
						open = true
					}
					continue
				}
				run += utf8.RuneCountInString(t)
				open = true
			}
			continue
		case html.ElementNode:
			if colours(x) {
				l.Colored = true
			}
			switch x.DataAtom {
			case atom.Br:
				open = true
				flush()
				continue
			case atom.Img:
				if attrOf(x, "src") != "" {
					l.Images = append(l.Images, [2]int{pixels(attrOf(x, "width")), pixels(attrOf(x, "height"))})
				} else if alt := attrOf(x, "alt"); alt != "" {
					run += utf8.RuneCountInString(alt)
					open = true
				}
				continue
			}
			if blockStarts[x.DataAtom] {
				flush()
				if gapped[x.DataAtom] {
					l.Gaps++
				}
				stack = append(stack, frame{n: x, leave: true})
			}
		}
		for c := x.LastChild; c != nil; c = c.PrevSibling {
			stack = append(stack, frame{n: c})
		}
	}
	flush()
	return l
}

// colours reports whether element n sets a colour of its own.
func colours(n *html.Node) bool {
	for _, a := range n.Attr {
		switch a.Key {
		case "bgcolor", "color", "text", "background":
			return true
		case "style":
			v := strings.ToLower(a.Val)
			if strings.Contains(v, "color") || strings.Contains(v, "background") {
				return true
			}
		}
	}
	return false
}

func attrOf(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// pixels reads a width or height attribute in pixels ("300", "300px"); a percentage or anything else is 0.
func pixels(v string) int {
	v = strings.TrimSuffix(strings.TrimSpace(v), "px")
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return min(n, 10000)
}
