// Package sinks holds weir's built-in sinks, one file (or a few) per kind:
// file, stdout, parquet, arrow, kafka, amqp, mqtt, nats, postgres. Each
// registers itself with pipeline.Default in an init function.
//
// A sink that can commit idempotently implements pipeline.Committer and is
// registered as exactly-once capable; exactly_once pipelines refuse the
// others at load time.
//
//	sinks:
//	  - file: { path: out/errors.jsonl }
//	  - stdout: {}
package sinks
