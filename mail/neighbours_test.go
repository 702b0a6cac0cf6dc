package mail

import (
	"testing"

	"github.com/postern/postern/internal/devstack/mailserver"
)

// TestNeighbours: the previous/next links of the reader skip the messages of the conversation shown, and stop at
// either end of the folder.
func TestNeighbours(t *testing.T) {
	e, s := seededSession(t, mailserver.Options{})
	if err := e.srv.AppendBulk(alice, "Bulk", 10, bulkMessage); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	for _, tc := range []struct {
		name         string
		uids         []uint32
		newer, older uint32
	}{
		{"middle", []uint32{5}, 6, 4},
		{"a conversation", []uint32{4, 5, 7}, 8, 6},
		{"newest", []uint32{10}, 0, 9},
		{"oldest", []uint32{1}, 2, 0},
		{"all", []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0, 0},
	} {
		newer, older, err := s.Neighbours(ctx, "Bulk", tc.uids)
		if err != nil {
			t.Fatal(err)
		}
		if newer != tc.newer || older != tc.older {
			t.Errorf("%s: Neighbours(%v) = %d, %d, want %d, %d", tc.name, tc.uids, newer, older, tc.newer, tc.older)
		}
	}
}
