package main

import (
	"strings"
	"testing"
)

// Every command prints its usage to stdout for -h and --help, and exits 0.
func TestEveryCommandHasHelp(t *testing.T) {
	cases := []struct {
		args []string
		want []string // in the output
	}{
		{[]string{"--help"}, []string{"usage:\n  weir run", "weir validate", "weir wal stat"}},
		{[]string{"-h"}, []string{"usage:\n  weir run"}},
		{[]string{"help"}, []string{"usage:\n  weir run"}},
		{[]string{"run", "-h"}, []string{"usage: weir run [-c FILE]", "-watch-interval duration", "-log-format string"}},
		{[]string{"run", "--help"}, []string{"usage: weir run [-c FILE]"}},
		{[]string{"validate", "--help"}, []string{"usage: weir validate [-c FILE]", "-c string"}},
		{[]string{"validate", "-h"}, []string{"usage: weir validate"}},
		{[]string{"checkpoints", "-h"}, []string{"usage: weir checkpoints", "-pipeline value"}},
		{[]string{"test", "--help"}, []string{"usage: weir test", "-v\tshow the output"}},
		{[]string{"schema", "-h"}, []string{"usage: weir schema"}},
		{[]string{"wal", "--help"}, []string{"usage: weir wal stat DIR"}},
		{[]string{"wal", "dump", "-h"}, []string{"usage: weir wal dump DIR [--from N]", "-from string"}},
		{[]string{"wal", "verify", "--help"}, []string{"usage: weir wal verify DIR", "-repair"}},
	}
	for _, c := range cases {
		code, out, errOut := runCLI(t, c.args...)
		if code != exitOK || errOut != "" {
			t.Errorf("weir %s: exit %d, stderr %q; want 0 and nothing", strings.Join(c.args, " "), code, errOut)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("weir %s: output does not contain %q:\n%s", strings.Join(c.args, " "), w, out)
			}
		}
	}
}
