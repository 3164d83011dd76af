package pipeline

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSOptions is the `tls:` block of a network connector:
//
//	tls: { ca_file: ca.pem, cert_file: client.pem, key_file: client.key,
//	       server_name: broker.internal, insecure_skip_verify: false }
//
// A nil *TLSOptions means "no TLS unless the URL scheme asks for it".
type TLSOptions struct {
	// CAFile is a PEM bundle of CAs to trust instead of the system pool.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// mutual TLS; both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the host name the server certificate is
	// checked against (default: the host of the URL).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Validate implements Validator: cert_file and key_file go together.
func (o *TLSOptions) Validate() error {
	if o == nil {
		return nil
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New("tls: cert_file and key_file must be set together")
	}
	return nil
}

// Config builds a *tls.Config from the options, reading the files now. It
// returns nil, nil for nil options. Errors name the file, never its content.
func (o *TLSOptions) Config() (*tls.Config, error) {
	if o == nil {
		return nil, nil
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	c := &tls.Config{ServerName: o.ServerName, InsecureSkipVerify: o.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // opt-in, documented
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: ca_file %s: no PEM certificate found", o.CAFile)
		}
		c.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: load cert_file %s / key_file %s: %w", o.CertFile, o.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// IsCertificateError reports whether err is a TLS certificate
// verification failure (unknown authority, wrong host name, expired):
// retrying the connection cannot fix it, so connectors fail at once.
func IsCertificateError(err error) bool {
	var ve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}
