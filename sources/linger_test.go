package sources

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestLinger(t *testing.T) {
	ctx := context.Background()
	// What is queued is taken at once, up to max.
	msgs := make(chan int, 10)
	for i := range 5 {
		msgs <- i
	}
	timer := time.NewTimer(time.Hour)
	got, closed := linger(ctx, msgs, timer, nil, 3)
	if !slices.Equal(got, []int{0, 1, 2}) || closed {
		t.Fatalf("max 3: got %v, closed %v", got, closed)
	}
	// Then it waits for more until the timer fires.
	timer.Reset(50 * time.Millisecond)
	go func() { time.Sleep(10 * time.Millisecond); msgs <- 5 }()
	got, closed = linger(ctx, msgs, timer, got[:0], 10)
	if !slices.Equal(got, []int{3, 4, 5}) || closed {
		t.Fatalf("after the timer: got %v, closed %v", got, closed)
	}
	// A closed channel ends it and says so, keeping what came before.
	msgs <- 6
	close(msgs)
	timer.Reset(time.Hour)
	got, closed = linger(ctx, msgs, timer, nil, 10)
	if !slices.Equal(got, []int{6}) || !closed {
		t.Fatalf("closed: got %v, closed %v", got, closed)
	}
	// A cancelled context ends the wait.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	got, closed = linger(cctx, make(chan int), timer, []int{7}, 10)
	if !slices.Equal(got, []int{7}) || closed {
		t.Fatalf("cancelled: got %v, closed %v", got, closed)
	}
}
