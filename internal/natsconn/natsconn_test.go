package natsconn

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestPermanent(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("nats: connect: %w", nats.ErrAuthorization), true},
		{fmt.Errorf("nats: connect: %w", nats.ErrAccountAuthExpired), true},
		{errors.New("nats: Authorization Violation"), true},
		{errors.New("open /run/secrets/x.creds: no such file or directory"), true},
		{fmt.Errorf("nats: connect: %w", nats.ErrNoServers), false},
		{io.EOF, false},
	} {
		if got := Permanent(tc.err); got != tc.want {
			t.Errorf("Permanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestOptionsSecretFiles(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	if _, err := Options("weir t", Auth{TokenFile: "/nonexistent/token"}, time.Second, time.Second, log, "nats://h"); err == nil || !strings.Contains(err.Error(), "nats: token_file:") {
		t.Fatalf("missing token_file: %v", err)
	}
	if _, err := Options("weir t", Auth{Username: "u", PasswordFile: "/nonexistent/pw"}, time.Second, time.Second, log, "nats://h"); err == nil || !strings.Contains(err.Error(), "/nonexistent/pw") {
		t.Fatalf("missing password_file: %v", err)
	}
	opts, err := Options("weir t", Auth{}, time.Second, time.Second, log, "nats://h")
	if err != nil || len(opts) == 0 {
		t.Fatalf("no auth: %v, %d options", err, len(opts))
	}
}
