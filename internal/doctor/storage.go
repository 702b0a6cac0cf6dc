package doctor

import (
	"context"
	"fmt"

	"github.com/postern/postern/internal/store"
)

// storage checks the database storage.driver names. For PostgreSQL it connects and reads the server and schema
// versions, changing nothing (the first `postern serve` creates the tables).
func (d *run) storage(ctx context.Context) {
	s := d.cfg.Storage
	if s.Driver != "postgres" {
		d.pass("storage", "sqlite at %s (one instance; use driver postgres for several)", s.Path)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	info, err := store.InspectPostgres(ctx, s.DSN)
	if err != nil {
		d.fail("storage", err.Error(),
			"Check storage.dsn (host, port, database, user; the password in dsn_file or .pgpass) and that PostgreSQL accepts "+
				"connections from this host (listen_addresses, pg_hba.conf).")
		return
	}
	detail := fmt.Sprintf("PostgreSQL %s, schema version %d of %d", info.ServerVersion, info.SchemaVersion, info.LatestVersion)
	switch {
	case info.ServerVersionNum < store.MinPostgresVersion:
		d.fail("storage", detail, "Postern needs PostgreSQL 11 or newer; upgrade the server.")
	case info.SchemaVersion > info.LatestVersion:
		d.fail("storage", detail, "The database was migrated by a newer Postern: run that version (or newer) on every instance.")
	case info.SchemaVersion < info.LatestVersion && !info.CanCreate:
		d.fail("storage", detail, "The first start creates Postern's tables, but this user may not create objects in the schema: "+
			"GRANT CREATE ON SCHEMA <schema> TO <user>, or run the first start as the schema's owner.")
	case info.SchemaVersion < info.LatestVersion:
		d.pass("storage", "%s; the next start migrates it", detail)
	default:
		d.pass("storage", "%s", detail)
	}
}
