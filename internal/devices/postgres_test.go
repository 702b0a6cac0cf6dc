package devices

import (
	"context"
	"testing"

	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/internal/store/pgtest"
)

// openPostgres opens a PostgreSQL store in a schema of its own, dropped at the test's end.
func openPostgres(t *testing.T, sealer *seal.Sealer) *store.Postgres {
	t.Helper()
	s, err := store.OpenPostgres(context.Background(), pgtest.DSN(t), sealer)
	if err != nil {
		t.Fatalf("OpenPostgres = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
