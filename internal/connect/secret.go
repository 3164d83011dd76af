package connect

import (
	"fmt"
	"os"
	"strings"
)

// ReadSecretFile reads a password or token from a file (a Kubernetes or
// Docker secret), dropping one trailing newline. The error names the path,
// never the content.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read password_file: %w", err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}
