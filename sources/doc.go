// Package sources holds weir's built-in sources, one file (or a few) per
// kind: file, stdin, generate, nexmark, kafka, amqp, mqtt, nats,
// http_server, syslog, postgres_cdc. Each registers itself with
// pipeline.Default in an init function.
//
// A source that can replay from a position (file, generate, nexmark,
// kafka, postgres_cdc by LSN) implements pipeline.Positioned; one that
// cannot (stdin, the message queues, http_server, syslog) is fed through
// the write-ahead log by the runtime under exactly_once, and acknowledges
// upstream through the AckFunc it returns.
//
//	sources:
//	  - file: { paths: ["logs/*.log"], follow: true }
//	  - generate: { rate: 1000, seed: 1, count: 100000 }
package sources
