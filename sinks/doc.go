// Package sinks holds weir's built-in sinks, one file (or a few) per kind:
// file, stdout, parquet, arrow, s3, kafka, amqp, mqtt, nats, postgres,
// http, blackhole. Each registers itself with pipeline.Default in an init
// function.
//
// parquet, arrow and s3 are one ColumnarSink each (columnar_sink.go): the
// encoders, the schema and the partition templating are shared, and what
// differs is where finished parts go: files in an output directory, or
// objects in a bucket (columnar_remote.go, s3_upload.go).
//
// A sink that can commit idempotently implements pipeline.Committer and is
// registered as exactly-once capable; exactly_once pipelines refuse the
// others at load time.
//
// postgres, kafka, parquet and arrow also keep task truths
// (pipeline.TaskStore, in postgres_tasks.go, kafka_tasks.go and
// columnar_tasks.go): with a consumer-group source, each partition's
// offset and keyed state commit with the output, fenced against processes
// that lost the partition.
//
//	sinks:
//	  - file: { path: out/errors.jsonl }
//	  - stdout: {}
package sinks
