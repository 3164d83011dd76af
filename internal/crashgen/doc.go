// Package crashgen draws random pipelines for the generative crash test
// (crash_generative_test.go in the root package) and computes, from their
// input alone, what their committed output must be.
//
// A Config is a pure function of its seed (Generate): a source (finite
// files, a followed file rotated by rename or copytruncate while weir
// runs, stdin, or generate), parse, filter and map operators, maybe a
// tumbling or hopping window with random size, watermark and allowed
// lateness, and one to three file, parquet and postgres sinks with
// templated paths over 1 to 200 keys, with random max_open_files,
// batch_size, checkpoint_interval and guarantee. The input carries a few
// malformed lines and poison records (no key for the path template, no
// event time), which must end in the dead-letter output.
//
// The oracle (Expect) is written from the YAML's meaning, not from weir's
// code: it filters, maps and windows the input itself (watermarks advance
// per record, a window fires once the watermark reaches its end, a late
// record re-fires its window within allowed_lateness and is dead-lettered
// after it) and says, per sink, which items land where and which records
// are dead-lettered by which component. Check compares that with what a
// run left behind (Read):
//
//	cfg := crashgen.Generate(seed)
//	yaml := cfg.YAML(crashgen.Paths{Dir: dir, In: in})
//	// ... write cfg.Input, run weir, kill it, restart it ...
//	out, err := crashgen.Read(ctx, cfg, paths, pg)
//	problems := crashgen.Check(cfg, cfg.Expect(), out, kills)
//
// Input event times are 3 ms past a multiple of 10 ms, and every window
// size, slide, watermark and lateness is whole seconds, so no record ever
// sits exactly on a boundary where "reaches" and "passes" would differ.
package crashgen
