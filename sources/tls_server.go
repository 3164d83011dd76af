package sources

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/weirhq/weir/pipeline"
)

// The `tls:` block of a listening source (http_server, syslog over TCP)
// reads pipeline.TLSOptions the server's way round: cert_file and key_file
// are the server's certificate and key, and are required; ca_file, when
// set, is the pool client certificates must chain to (mutual TLS: a client
// without one is refused). server_name and insecure_skip_verify are client
// options and are refused.

// validateServerTLS checks a listening source's tls block; name prefixes
// the error ("http_server").
func validateServerTLS(name string, o *pipeline.TLSOptions) error {
	if o == nil {
		return nil
	}
	if o.CertFile == "" || o.KeyFile == "" {
		return fmt.Errorf("%s: tls: cert_file and key_file (the server's certificate and key) are required", name)
	}
	if o.ServerName != "" || o.InsecureSkipVerify {
		return fmt.Errorf("%s: tls: server_name and insecure_skip_verify are client options; a server takes cert_file, key_file and ca_file (client certificates)", name)
	}
	return nil
}

// serverTLSConfig builds the server side *tls.Config, reading the files
// now; nil for nil options. Errors name the files, never their content.
func serverTLSConfig(o *pipeline.TLSOptions) (*tls.Config, error) {
	if o == nil {
		return nil, nil
	}
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("tls: cert_file and key_file are required")
	}
	cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load cert_file %s / key_file %s: %w", o.CertFile, o.KeyFile, err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: ca_file %s: no PEM certificate found", o.CAFile)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}
