package amqpconn

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestDialConfig(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := DialConfig("amqp://guest:inurl@127.0.0.1:5672/", "weir", pw, nil, 5*time.Second, 0, "p/sources[0]/amqp")
	if err != nil {
		t.Fatal(err)
	}
	auth, ok := cfg.SASL[0].(*amqp.PlainAuth)
	if len(cfg.SASL) != 1 || !ok || auth.Username != "weir" || auth.Password != "fromfile" {
		t.Fatalf("SASL = %#v, want weir / the file's password", cfg.SASL)
	}
	if cfg.Heartbeat != 5*time.Second || cfg.Properties["connection_name"] != "weir p/sources[0]/amqp" || cfg.Dial == nil {
		t.Fatalf("config %+v", cfg)
	}
	if cfg, err := DialConfig("amqp://guest:inurl@127.0.0.1:5672/", "", "", nil, 0, 0, "c"); err != nil || cfg.SASL != nil {
		t.Fatalf("URL credentials: %v, SASL %#v (want the library's own from the URL)", err, cfg.SASL)
	}
	if _, err := DialConfig("amqp://guest:s3cret@host:notaport/", "", "", nil, 0, 0, "c"); err == nil || strings.Contains(err.Error(), "s3cret") || !strings.HasPrefix(err.Error(), "amqp: url amqp://xxxxx@host:notaport/") {
		t.Fatalf("bad URL: %v", err)
	}
	if _, err := DialConfig("amqp://127.0.0.1/", "u", "/nonexistent/pw", nil, 0, 0, "c"); err == nil || !strings.Contains(err.Error(), "/nonexistent/pw") {
		t.Fatalf("missing password_file: %v", err)
	}
}

func TestPermanent(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("amqp: connect: %w", amqp.ErrCredentials), true},
		{&amqp.Error{Code: amqp.NotFound, Reason: "no queue"}, true},
		{&amqp.Error{Code: amqp.ConnectionForced, Reason: "shutdown"}, false},
		{io.EOF, false},
	} {
		if got := Permanent(tc.err); got != tc.want {
			t.Errorf("Permanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
