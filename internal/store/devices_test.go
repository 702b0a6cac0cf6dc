package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// contractGrantKind: the kind defaults to web, is kept by UpdateGrant (which cannot change it), and an unknown kind
// is refused.
func contractGrantKind(t *testing.T, s *testStore) {
	ctx := context.Background()
	web := Grant{Issuer: "https://auth.example.org", Subject: "k"}
	if err := s.CreateGrant(ctx, &web); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Grant(ctx, web.ID); err != nil || got.Kind != KindWeb {
		t.Fatalf("Grant(default kind).Kind = %q, %v, want %q", got.Kind, err, KindWeb)
	}
	dev := Grant{Issuer: "https://auth.example.org", Subject: "k", Kind: KindDevice}
	if err := s.CreateGrant(ctx, &dev); err != nil {
		t.Fatal(err)
	}
	g, err := s.Grant(ctx, dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	g.Kind = KindWeb // UpdateGrant does not write the kind: it is fixed at creation
	g.LastError = "timeout"
	saved, err := s.UpdateGrant(ctx, g)
	if err != nil {
		t.Fatalf("UpdateGrant = %v", err)
	}
	if saved.Kind != KindDevice {
		t.Errorf("UpdateGrant(...).Kind = %q, want %q", saved.Kind, KindDevice)
	}
	if got, _ := s.Grant(ctx, dev.ID); got.Kind != KindDevice {
		t.Errorf("Grant after update .Kind = %q, want %q", got.Kind, KindDevice)
	}
	bad := Grant{Issuer: "https://auth.example.org", Subject: "k", Kind: "phone"}
	if err := s.CreateGrant(ctx, &bad); err == nil {
		t.Errorf("CreateGrant(kind phone) = nil, want an error")
	}
}

func sampleDevice(id, subject string) Device {
	return Device{ID: id, Issuer: "https://auth.example.org", Subject: subject, Address: subject + "@example.org",
		Name: "Phone " + id, GrantID: "grant-" + id, PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"}
}

// sameDevice compares devices field by field, times with Equal.
func sameDevice(t *testing.T, got, want Device) {
	t.Helper()
	for _, tm := range []struct {
		name      string
		got, want time.Time
	}{{"CreatedAt", got.CreatedAt, want.CreatedAt}, {"LastUsedAt", got.LastUsedAt, want.LastUsedAt},
		{"RevokedAt", got.RevokedAt, want.RevokedAt}} {
		if !tm.got.Equal(tm.want) {
			t.Errorf("device %s = %v, want %v", tm.name, tm.got, tm.want)
		}
	}
	got.CreatedAt, got.LastUsedAt, got.RevokedAt = time.Time{}, time.Time{}, time.Time{}
	want.CreatedAt, want.LastUsedAt, want.RevokedAt = time.Time{}, time.Time{}, time.Time{}
	if got != want {
		t.Errorf("device = %+v,\nwant   %+v", got, want)
	}
}

func contractDeviceRoundTrip(t *testing.T, s *testStore) {
	ctx := context.Background()
	s.now = func() time.Time { return at(0) }
	a := sampleDevice("aaaaa", "alice")
	if err := s.CreateDevice(ctx, &a); err != nil {
		t.Fatalf("CreateDevice = %v", err)
	}
	if !a.CreatedAt.Equal(at(0)) {
		t.Errorf("CreateDevice stamped CreatedAt %v, want %v", a.CreatedAt, at(0))
	}
	got, err := s.Device(ctx, "aaaaa")
	if err != nil {
		t.Fatalf("Device = %v", err)
	}
	sameDevice(t, got, a)

	dup := sampleDevice("aaaaa", "bob")
	if err := s.CreateDevice(ctx, &dup); !errors.Is(err, ErrConflict) {
		t.Errorf("CreateDevice(taken id) = %v, want ErrConflict", err)
	}
	if err := s.CreateDevice(ctx, &Device{ID: "x"}); err == nil {
		t.Errorf("CreateDevice(no owner) = nil, want an error")
	}
	if _, err := s.Device(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Device(unknown) = %v, want ErrNotFound", err)
	}

	b := sampleDevice("bbbbb", "alice")
	b.CreatedAt = at(time.Hour)
	c := sampleDevice("ccccc", "carol")
	for _, d := range []*Device{&b, &c} {
		if err := s.CreateDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := s.DevicesByOwner(ctx, "https://auth.example.org", "alice")
	if err != nil {
		t.Fatalf("DevicesByOwner = %v", err)
	}
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	if got, want := strings.Join(ids, ","), "aaaaa,bbbbb"; got != want {
		t.Errorf("DevicesByOwner(alice) = %s, want %s", got, want)
	}
	if ds, _ := s.DevicesByOwner(ctx, "https://other.example.org", "alice"); len(ds) != 0 {
		t.Errorf("DevicesByOwner(other issuer) = %d devices, want 0", len(ds))
	}
}

func contractDeviceTouchAndRevoke(t *testing.T, s *testStore) {
	ctx := context.Background()
	d := sampleDevice("ddddd", "dave")
	if err := s.CreateDevice(ctx, &d); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 5000)
	if err := s.TouchDevice(ctx, "ddddd", at(time.Minute), "192.0.2.7", long); err != nil {
		t.Fatalf("TouchDevice = %v", err)
	}
	got, _ := s.Device(ctx, "ddddd")
	if !got.LastUsedAt.Equal(at(time.Minute)) || got.LastUsedIP != "192.0.2.7" || len(got.LastUsedClient) != maxClientLength {
		t.Errorf("after TouchDevice: at %v ip %q client %d bytes, want %v 192.0.2.7 %d bytes",
			got.LastUsedAt, got.LastUsedIP, len(got.LastUsedClient), at(time.Minute), maxClientLength)
	}
	if err := s.TouchDevice(ctx, "nope", at(0), "", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("TouchDevice(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.SetDeviceGrant(ctx, "ddddd", "grant-new"); err != nil {
		t.Fatalf("SetDeviceGrant = %v", err)
	}
	if got, _ := s.Device(ctx, "ddddd"); got.GrantID != "grant-new" || got.PasswordHash != d.PasswordHash {
		t.Errorf("after SetDeviceGrant: grant %q, hash kept %v; want grant-new and the same hash", got.GrantID, got.PasswordHash == d.PasswordHash)
	}
	if err := s.SetDeviceGrant(ctx, "nope", "g"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetDeviceGrant(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.RevokeDevice(ctx, "ddddd", at(2*time.Minute)); err != nil {
		t.Fatalf("RevokeDevice = %v", err)
	}
	if err := s.RevokeDevice(ctx, "ddddd", at(3*time.Minute)); err != nil {
		t.Fatalf("RevokeDevice(again) = %v, want nil", err)
	}
	if got, _ := s.Device(ctx, "ddddd"); !got.RevokedAt.Equal(at(2 * time.Minute)) {
		t.Errorf("RevokedAt = %v, want the first revocation %v", got.RevokedAt, at(2*time.Minute))
	}
	if err := s.SetDeviceGrant(ctx, "ddddd", "grant-newer"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetDeviceGrant(revoked) = %v, want ErrNotFound", err)
	}
	if err := s.RevokeDevice(ctx, "nope", at(0)); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeDevice(unknown) = %v, want ErrNotFound", err)
	}
}
