package connect

import (
	"net/url"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"amqp://guest:s3cret@127.0.0.1:5672/", "amqp://guest:xxxxx@127.0.0.1:5672/"},
		{"amqp://127.0.0.1:5672/", "amqp://127.0.0.1:5672/"},
		{"postgres://u:s3cret@db:5432/x?sslmode=disable", "postgres://u:xxxxx@db:5432/x?sslmode=disable"},
		{"postgres://u@db/x?password=s3cret&sslmode=disable", "postgres://u@db/x?password=xxxxx&sslmode=disable"},
		{"host=db user=u password=s3cret dbname=x", "host=db user=u password=xxxxx dbname=x"},
		{"host=db password='s3 cret' dbname=x", "host=db password=xxxxx dbname=x"},
		{"amqp://u:s3cret@h:notaport/", "amqp://xxxxx@h:notaport/"},
		{"nats://u:s3cret@a:4222,nats://u:s3cret@b:4222", "nats://u:xxxxx@a:4222,nats://u:xxxxx@b:4222"},
		{"tcp://127.0.0.1:1883", "tcp://127.0.0.1:1883"},
	} {
		got := RedactURL(tc.in)
		if got != tc.want || strings.Contains(got, "s3") {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestURLErrorHidesThePassword(t *testing.T) {
	raw := "amqp://guest:s3cret@host:notaport/vh"
	_, perr := url.Parse(raw)
	if perr == nil {
		t.Fatal("the test URL parses")
	}
	err := URLError(raw, perr)
	if got, want := err.Error(), `url amqp://xxxxx@host:notaport/vh: invalid port ":notaport" after host`; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
