// Package connect holds what weir's network connectors share (amqp, mqtt,
// nats, postgres, kafka, http, syslog, in the sources and sinks packages
// and the internal/<proto>conn option packages): secrets read from files
// (secret.go), credentials redacted from errors and logs (redact.go), and
// reconnect backoff and the first-connection wait (backoff.go). It is not
// public API; the `tls:` option block, which configurations embed, is
// pipeline.TLSOptions.
package connect
