package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Device is one mail client's access through the bridge: its owner, its own
// grant, and its password as an argon2id hash (never the password).
type Device struct {
	// ID is chosen by the caller (internal/devices puts it in the password).
	ID string
	// Issuer and Subject identify the owner; Address is the owner's mail
	// address, the bridge's username.
	Issuer, Subject, Address string
	// Name is the user's label, e.g. "iPhone".
	Name string
	// GrantID is the device's own grant (kind device).
	GrantID string
	// PasswordHash is an argon2id PHC string with its parameters.
	PasswordHash string
	// CreatedAt is stamped by CreateDevice when zero.
	CreatedAt time.Time
	// LastUsedAt, LastUsedIP and LastUsedClient describe the last login
	// (zero and empty until the first).
	LastUsedAt     time.Time
	LastUsedIP     string
	LastUsedClient string
	// RevokedAt is when the device was revoked; zero while it is live.
	RevokedAt time.Time
}

// deviceColumns is the column list every device read selects, in scanDevice's order.
const deviceColumns = `id, issuer, subject, address, name, grant_id, password_hash,
	created_at, last_used_at, last_used_ip, last_used_client, revoked_at`

// The device statements, written once with ? placeholders; Postgres runs them through dollar.
const (
	insertDeviceSQL = `INSERT INTO devices (` + deviceColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	selectDeviceSQL = `SELECT ` + deviceColumns + ` FROM devices WHERE id = ?`
	ownerDevicesSQL = `SELECT ` + deviceColumns + ` FROM devices WHERE issuer = ? AND subject = ? ORDER BY created_at, id`
	touchDeviceSQL  = `UPDATE devices SET last_used_at = ?, last_used_ip = ?, last_used_client = ? WHERE id = ?`
	revokeDeviceSQL = `UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at = 0`
	existsDeviceSQL = `SELECT COUNT(*) FROM devices WHERE id = ?`
	setGrantSQL     = `UPDATE devices SET grant_id = ? WHERE id = ? AND revoked_at = 0`
	maxClientLength = 200 // a client's ID string is display only; a hostile one must not fill the row
)

// deviceArgs checks d for CreateDevice, stamps CreatedAt, and returns insertDeviceSQL's arguments.
func (s *codec) deviceArgs(d *Device) ([]any, error) {
	if d.ID == "" || d.Issuer == "" || d.Subject == "" || d.GrantID == "" || d.PasswordHash == "" {
		return nil, errors.New("store: device needs an id, an owner, a grant and a password hash")
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = s.now()
	}
	return []any{d.ID, d.Issuer, d.Subject, d.Address, d.Name, d.GrantID, d.PasswordHash,
		toNanos(d.CreatedAt), toNanos(d.LastUsedAt), d.LastUsedIP, d.LastUsedClient, toNanos(d.RevokedAt)}, nil
}

// scanDevice reads one row selected with deviceColumns; a missing row comes back as the driver's no-rows error.
func scanDevice(row rowScanner) (Device, error) {
	var d Device
	var created, used, revoked int64
	err := row.Scan(&d.ID, &d.Issuer, &d.Subject, &d.Address, &d.Name, &d.GrantID, &d.PasswordHash,
		&created, &used, &d.LastUsedIP, &d.LastUsedClient, &revoked)
	if err != nil {
		return Device{}, err
	}
	d.CreatedAt, d.LastUsedAt, d.RevokedAt = fromNanos(created), fromNanos(used), fromNanos(revoked)
	return d, nil
}

// clip bounds a client-supplied string.
func clip(s string) string {
	if len(s) > maxClientLength {
		return s[:maxClientLength]
	}
	return s
}

// CreateDevice stores a new device. It returns ErrConflict if the id is taken (the caller picks another).
func (s *SQLite) CreateDevice(ctx context.Context, d *Device) error {
	args, err := s.deviceArgs(d)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, insertDeviceSQL, args...); err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("store: create device: id exists: %w", ErrConflict)
		}
		return fmt.Errorf("store: create device: %w", err)
	}
	return nil
}

// Device returns the device with the given id, revoked or not, or ErrNotFound.
func (s *SQLite) Device(ctx context.Context, id string) (Device, error) {
	d, err := scanDevice(s.db.QueryRowContext(ctx, selectDeviceSQL, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, fmt.Errorf("store: device %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("store: device %q: %w", id, err)
	}
	return d, nil
}

// DevicesByOwner returns one user's devices, revoked ones included, oldest first.
func (s *SQLite) DevicesByOwner(ctx context.Context, issuer, subject string) ([]Device, error) {
	rows, err := s.db.QueryContext(ctx, ownerDevicesSQL, issuer, subject)
	if err != nil {
		return nil, fmt.Errorf("store: devices by owner: %w", err)
	}
	defer rows.Close()
	var ds []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("store: devices by owner: %w", err)
		}
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: devices by owner: %w", err)
	}
	return ds, nil
}

// TouchDevice records a login: when, from which IP, and the client's ID string (clipped to 200 bytes).
func (s *SQLite) TouchDevice(ctx context.Context, id string, at time.Time, ip, client string) error {
	res, err := s.db.ExecContext(ctx, touchDeviceSQL, toNanos(at), ip, clip(client), id)
	if err != nil {
		return fmt.Errorf("store: touch device %q: %w", id, err)
	}
	return oneRow(res, "store: touch device %q: %w", id)
}

// RevokeDevice marks a live device revoked at at. Revoking a revoked device keeps the first time and is not an
// error; an unknown id is ErrNotFound.
func (s *SQLite) RevokeDevice(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, revokeDeviceSQL, toNanos(at), id)
	if err != nil {
		return fmt.Errorf("store: revoke device %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	var n int
	if err := s.db.QueryRowContext(ctx, existsDeviceSQL, id).Scan(&n); err != nil {
		return fmt.Errorf("store: revoke device %q: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("store: revoke device %q: %w", id, ErrNotFound)
	}
	return nil
}

// SetDeviceGrant gives a live device a new grant (after the user signed the device in again); the device keeps its
// password. A revoked or unknown device is ErrNotFound.
func (s *SQLite) SetDeviceGrant(ctx context.Context, id, grantID string) error {
	res, err := s.db.ExecContext(ctx, setGrantSQL, grantID, id)
	if err != nil {
		return fmt.Errorf("store: set device grant %q: %w", id, err)
	}
	return oneRow(res, "store: set device grant %q: %w", id)
}

// SetDeviceGrant gives a live device a new grant; see (*SQLite).SetDeviceGrant.
func (s *Postgres) SetDeviceGrant(ctx context.Context, id, grantID string) error {
	tag, err := s.pool.Exec(ctx, dollar(setGrantSQL), grantID, id)
	if err != nil {
		return fmt.Errorf("store: set device grant %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: set device grant %q: %w", id, ErrNotFound)
	}
	return nil
}

// CreateDevice stores a new device; see (*SQLite).CreateDevice.
func (s *Postgres) CreateDevice(ctx context.Context, d *Device) error {
	args, err := s.deviceArgs(d)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, dollar(insertDeviceSQL), args...); err != nil {
		if pgUniqueViolation(err) {
			return fmt.Errorf("store: create device: id exists: %w", ErrConflict)
		}
		return fmt.Errorf("store: create device: %w", err)
	}
	return nil
}

// Device returns the device with the given id; see (*SQLite).Device.
func (s *Postgres) Device(ctx context.Context, id string) (Device, error) {
	d, err := scanDevice(s.pool.QueryRow(ctx, dollar(selectDeviceSQL), id))
	if pgNoRows(err) {
		return Device{}, fmt.Errorf("store: device %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("store: device %q: %w", id, err)
	}
	return d, nil
}

// DevicesByOwner returns one user's devices; see (*SQLite).DevicesByOwner.
func (s *Postgres) DevicesByOwner(ctx context.Context, issuer, subject string) ([]Device, error) {
	rows, err := s.pool.Query(ctx, dollar(ownerDevicesSQL), issuer, subject)
	if err != nil {
		return nil, fmt.Errorf("store: devices by owner: %w", err)
	}
	defer rows.Close()
	var ds []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("store: devices by owner: %w", err)
		}
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: devices by owner: %w", err)
	}
	return ds, nil
}

// TouchDevice records a login; see (*SQLite).TouchDevice.
func (s *Postgres) TouchDevice(ctx context.Context, id string, at time.Time, ip, client string) error {
	tag, err := s.pool.Exec(ctx, dollar(touchDeviceSQL), toNanos(at), ip, clip(client), id)
	if err != nil {
		return fmt.Errorf("store: touch device %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: touch device %q: %w", id, ErrNotFound)
	}
	return nil
}

// RevokeDevice marks a live device revoked; see (*SQLite).RevokeDevice.
func (s *Postgres) RevokeDevice(ctx context.Context, id string, at time.Time) error {
	tag, err := s.pool.Exec(ctx, dollar(revokeDeviceSQL), toNanos(at), id)
	if err != nil {
		return fmt.Errorf("store: revoke device %q: %w", id, err)
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	var n int
	if err := s.pool.QueryRow(ctx, dollar(existsDeviceSQL), id).Scan(&n); err != nil {
		return fmt.Errorf("store: revoke device %q: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("store: revoke device %q: %w", id, ErrNotFound)
	}
	return nil
}
