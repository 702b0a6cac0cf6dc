package store

import (
	"context"
	"testing"
	"time"

	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store/pgtest"
)

// The store contract: every driver must pass these cases, so SQLite and PostgreSQL cannot drift. Each case gets a
// fresh, empty store. TestSQLiteContract always runs; TestPostgresContract runs against the server named by
// POSTERN_TEST_POSTGRES_DSN (each case in a schema of its own, dropped afterwards) and is skipped, saying so, when
// the variable is unset. `go test -run 'Postgres|Instance' ./...` selects the PostgreSQL and multi-instance tests.

// contractStore is the whole store contract, as the keeper, web and cmd use it.
type contractStore interface {
	CreateGrant(ctx context.Context, g *Grant) error
	Grant(ctx context.Context, id string) (Grant, error)
	UpdateGrant(ctx context.Context, g Grant) (Grant, error)
	TouchGrant(ctx context.Context, id string, lastActive, nextRefreshAt time.Time) error
	DeleteGrant(ctx context.Context, id string) error
	DeleteEndedGrants(ctx context.Context, before time.Time) (int, error)
	DueGrants(ctx context.Context, before time.Time, limit int) ([]string, error)
	GrantsBySubject(ctx context.Context, issuer, subject string) ([]string, error)
	CountGrantsByState(ctx context.Context) (map[GrantState]int, error)
	ClaimLease(ctx context.Context, grantID, owner string, now, until time.Time) (bool, error)
	ClaimLeaseFrom(ctx context.Context, grantID, owner string, now, until time.Time) (bool, string, error)
	ReleaseLease(ctx context.Context, grantID, owner string) error
	CreateDevice(ctx context.Context, d *Device) error
	Device(ctx context.Context, id string) (Device, error)
	DevicesByOwner(ctx context.Context, issuer, subject string) ([]Device, error)
	TouchDevice(ctx context.Context, id string, at time.Time, ip, client string) error
	RevokeDevice(ctx context.Context, id string, at time.Time) error
	SetDeviceGrant(ctx context.Context, id, grantID string) error
	Settings(ctx context.Context, issuer, subject string) (Settings, error)
	SaveSettings(ctx context.Context, st *Settings) error
	SaveSession(ctx context.Context, sess Session) error
	Session(ctx context.Context, id string) (Session, error)
	TouchSession(ctx context.Context, id string, lastSeen, expiresAt time.Time) error
	DeleteSession(ctx context.Context, id string) error
	DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error)
	Ping(ctx context.Context) error
	Close() error
}

var (
	_ contractStore = (*SQLite)(nil)
	_ contractStore = (*Postgres)(nil)
)

// testStore is one driver's store under test, with the few driver-specific powers the cases need: its clock, raw
// SQL (as an attacker with write access to the database would have), and a second handle on the same database (as
// a second process or instance would have).
type testStore struct {
	contractStore
	*codec
	raw    func(query string, args ...any) error
	rawInt func(query string) (int, error)
	reopen func(t testing.TB) contractStore
}

// exec runs raw SQL written with ? placeholders.
func (s *testStore) exec(t testing.TB, query string, args ...any) error {
	t.Helper()
	return s.raw(query, args...)
}

// count returns the number of rows in table.
func (s *testStore) count(t testing.TB, table string) int {
	t.Helper()
	n, err := s.rawInt("SELECT COUNT(*) FROM " + table)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var contractCases = []struct {
	name string
	run  func(t *testing.T, s *testStore)
}{
	{"GrantRoundTrip", contractGrantRoundTrip},
	{"CreateGrantDefaults", contractCreateGrantDefaults},
	{"CreateGrantRejects", contractCreateGrantRejects},
	{"GrantNotFound", contractGrantNotFound},
	{"UpdateGrant", contractUpdateGrant},
	{"UpdateGrantStaleWriter", contractUpdateGrantStaleWriter},
	{"UpdateGrantConcurrent", contractUpdateGrantConcurrent},
	{"TouchGrant", contractTouchGrant},
	{"DeleteGrant", contractDeleteGrant},
	{"GrantsBySubjectAndCount", contractGrantsBySubjectAndCount},
	{"SealedBlobBoundToRow", contractSealedBlobBoundToRow},
	{"DeleteEndedGrants", contractDeleteEndedGrants},
	{"TouchKeepsBackoff", contractTouchKeepsBackoff},
	{"ClaimLease", contractClaimLease},
	{"ClaimLeaseErrors", contractClaimLeaseErrors},
	{"ClaimLeaseExclusive", contractClaimLeaseExclusive},
	{"ClaimLeaseFrom", contractClaimLeaseFrom},
	{"SessionRoundTrip", contractSessionRoundTrip},
	{"SaveSessionUpsert", contractSaveSessionUpsert},
	{"SaveSessionRejects", contractSaveSessionRejects},
	{"SessionExpiry", contractSessionExpiry},
	{"SessionDataBoundToID", contractSessionDataBoundToID},
	{"DueGrants", contractDueGrants},
	{"GrantKind", contractGrantKind},
	{"DeviceRoundTrip", contractDeviceRoundTrip},
	{"DeviceTouchAndRevoke", contractDeviceTouchAndRevoke},
	{"SettingsRoundTrip", contractSettingsRoundTrip},
	{"SettingsRejects", contractSettingsRejects},
}

func TestSQLiteContract(t *testing.T) {
	for _, c := range contractCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, openSQLiteTest(t))
		})
	}
}

func TestPostgresContract(t *testing.T) {
	dsn := pgtest.BaseDSN(t)
	for _, c := range contractCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, openPostgresTest(t, dsn))
		})
	}
}

// openSQLiteTest opens a fresh SQLite store in a temporary directory.
func openSQLiteTest(t *testing.T) *testStore {
	s, path := openTemp(t)
	return &testStore{
		contractStore: s, codec: &s.codec,
		raw: func(q string, args ...any) error { _, err := s.db.Exec(q, args...); return err },
		rawInt: func(q string) (n int, err error) {
			err = s.db.QueryRow(q).Scan(&n)
			return n, err
		},
		reopen: func(t testing.TB) contractStore { return openAt(t, path, newSealer(t, "old")) },
	}
}

// openPostgresAt opens a Postgres store on dsn and closes it at test end.
func openPostgresAt(t testing.TB, dsn string, sealer *seal.Sealer) *Postgres {
	t.Helper()
	s, err := OpenPostgres(context.Background(), dsn, sealer)
	if err != nil {
		t.Fatalf("OpenPostgres = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openPostgresTest opens a fresh Postgres store in a schema of its own.
func openPostgresTest(t *testing.T, dsn string) *testStore {
	dsn = pgtest.Schema(t, dsn)
	s := openPostgresAt(t, dsn, newSealer(t, "old"))
	return &testStore{
		contractStore: s, codec: &s.codec,
		raw: func(q string, args ...any) error {
			_, err := s.pool.Exec(context.Background(), dollar(q), args...)
			return err
		},
		rawInt: func(q string) (n int, err error) {
			err = s.pool.QueryRow(context.Background(), q).Scan(&n)
			return n, err
		},
		reopen: func(t testing.TB) contractStore { return openPostgresAt(t, dsn, newSealer(t, "old")) },
	}
}
