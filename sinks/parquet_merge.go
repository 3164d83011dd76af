package sinks

import (
	"fmt"
	"os"

	"github.com/parquet-go/parquet-go"
)

// mergingFormat is implemented by formats whose finished files can be
// merged into one (Parquet): the s3 sink holds the small Parquet parts of
// several checkpoints in its staging directory and uploads them as one
// object once they reach min_file_bytes (see S3Config).
type mergingFormat interface {
	// merge writes the rows of the files srcs, in order, as one file of
	// schema s on dst.
	merge(dst *partFile, s *ColumnarSchema, srcs []string) error
}

// merge concatenates Parquet files of one schema. parquet-go copies column
// chunks verbatim where it can (same codec and encodings, which is the case
// for the sink's own parts), so a merge costs little more than the copy.
func (f *parquetFormat) merge(dst *partFile, s *ColumnarSchema, srcs []string) error {
	p, err := f.planFor(s)
	if err != nil {
		return err
	}
	var groups []parquet.RowGroup
	for _, src := range srcs {
		fh, err := os.Open(src)
		if err != nil {
			return err
		}
		defer fh.Close()
		fi, err := fh.Stat()
		if err != nil {
			return err
		}
		pf, err := parquet.OpenFile(fh, fi.Size())
		if err != nil {
			return fmt.Errorf("open %s: %w", src, err)
		}
		groups = append(groups, pf.RowGroups()...)
	}
	w := parquet.NewWriter(dst, p.config)
	if _, err := w.WriteRowGroup(parquet.MultiRowGroup(groups...)); err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	return w.Close()
}
