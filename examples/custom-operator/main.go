// Command custom-operator shows how a Go program adds its own operator to
// weir and runs a YAML pipeline that uses it. It uses only weir's public
// API: pipeline (the registry and the Operator interface) and runtime.
//
//	go run ./examples/custom-operator -c examples/custom-operator/pipeline.yaml
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"syscall"

	_ "github.com/weirhq/weir/operators" // weir's built-in components
	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
	_ "github.com/weirhq/weir/sinks"
	_ "github.com/weirhq/weir/sources"
)

// RedactConfig is the YAML configuration of the redact_emails operator:
//
//   - redact_emails: { fields: [msg, user], replacement: "<email>" }
type RedactConfig struct {
	Fields      []string `yaml:"fields"`
	Replacement string   `yaml:"replacement"`
}

// Validate is called after decoding; its error is shown with the
// operator's file:line:column.
func (c *RedactConfig) Validate() error {
	if len(c.Fields) == 0 {
		return errors.New("redact_emails: list the fields to redact in `fields`")
	}
	return nil
}

// NewOperator builds the running operator (once per parallel instance).
func (c *RedactConfig) NewOperator(b pipeline.Build) (pipeline.Operator, error) {
	return &redact{fields: c.Fields, with: c.Replacement}, nil
}

var email = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)

type redact struct {
	fields []string
	with   string
}

// Stateless tells the runtime that each batch's output depends on that
// batch alone: right after parse, the operator then runs on every core, one
// instance per goroutine, with the output in the same order.
func (r *redact) Stateless() bool { return true }

// Process rewrites the batch in place. Records whose field is not a string
// are left alone; an operator that cannot handle a record would instead
// call b.Reject to send it to the dead-letter output.
func (r *redact) Process(_ context.Context, b *pipeline.Batch) error {
	for _, rec := range b.Records {
		for _, f := range r.fields {
			if s, ok := rec.Get(f).(string); ok && email.MatchString(s) {
				rec.Set(f, email.ReplaceAllString(s, r.with))
			}
		}
	}
	return nil
}

func register(reg *pipeline.Registry) {
	reg.Register(pipeline.Entry{
		Kind: pipeline.KindOperator, Name: "redact_emails",
		Doc:       "replace e-mail addresses in string fields",
		NewConfig: func() any { return &RedactConfig{Replacement: "<redacted>"} },
	})
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "custom-operator:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("custom-operator", flag.ContinueOnError)
	file := fs.String("c", "examples/custom-operator/pipeline.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// A registry of our own: weir's built-ins plus our operator.
	reg := pipeline.Default.Clone()
	register(reg)
	cfg, err := reg.LoadFile(*file)
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() { <-sigs; close(stop) }()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return runtime.Run(context.Background(), cfg, nil, stop, runtime.Options{Logger: logger})
}
