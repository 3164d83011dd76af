// Package killpoint lets a crash test kill a weir process at a named
// moment of its protocols (inside a rebalance callback, between the
// checkpoint save and the sink commit, ...), where SIGKILLs sent from
// outside at random moments rarely land.
//
// It is inert unless the environment variable WEIR_KILLPOINTS is set, to
// a comma-separated list of name=probability:
//
//	WEIR_KILLPOINTS=checkpoint.saved=0.02,kafka.revoke.before-checkpoint=0.3
//
// Each time the process passes a named point it SIGKILLs itself with that
// probability, after writing "weir: killpoint NAME: SIGKILL" to stderr so
// that the test can count where its processes died. The points are listed
// where Hit is called; the names are the constants below.
package killpoint
