package connect

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	var prevMax time.Duration
	for i := 0; i < 8; i++ {
		d := b.Next()
		hi := min(10*time.Millisecond<<i, 80*time.Millisecond)
		if d < hi/2 || d > hi {
			t.Fatalf("attempt %d: %v outside [%v, %v]", i, d, hi/2, hi)
		}
		prevMax = hi
	}
	if prevMax != 80*time.Millisecond || b.Attempts() != 8 {
		t.Fatalf("cap %v, attempts %d", prevMax, b.Attempts())
	}
	b.Reset()
	if d := b.Next(); d > 10*time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
	var zero Backoff
	if d := zero.Next(); d < 50*time.Millisecond || d > 100*time.Millisecond {
		t.Fatalf("zero value first delay %v, want 50..100ms", d)
	}
}
