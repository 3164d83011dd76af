package wal_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/weirhq/weir/wal"
)

func Example() {
	tmp, err := os.MkdirTemp("", "wal-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "stdin")

	l, err := wal.Open(dir, wal.Options{Sync: wal.SyncAlways})
	if err != nil {
		log.Fatal(err)
	}
	// Append returns once the records are fsynced: now ack upstream.
	first, err := l.Append(context.Background(), []byte("one"), []byte("two"), []byte("three"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("first index:", first)
	if err := l.Close(); err != nil {
		log.Fatal(err)
	}

	// After a restart, replay from the checkpointed index.
	l, err = wal.Open(dir, wal.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	r, err := l.NewReader(1)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	for {
		index, data, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d %s\n", index, data)
	}
	// Output:
	// first index: 0
	// 1 two
	// 2 three
}
