package pipeline

// Helpers for the columnar sinks (sinks/columnar*.go, parquet, arrow). They
// live here because they need the unexported layout of Fields.

// ScalarAt is Scalar for the i-th field (0 ≤ i < Len()), for readers that
// know where a field is — the columnar sinks remember each column's
// position in the last record, since the records of one stream usually
// carry their fields in the same order. The rules are Scalar's: no
// allocation, nothing stored in fs, ScalarOther for what Get must read.
func (fs *Fields) ScalarAt(i int) Scalar {
	f := &fs.f[i]
	if f.raw == nil || f.decoded {
		switch v := f.val.(type) {
		case nil:
			return Scalar{}
		case string:
			return Scalar{Kind: ScalarString, Str: v}
		case int64:
			return Scalar{Kind: ScalarInt, Int: v, Float: float64(v)}
		case float64:
			return Scalar{Kind: ScalarFloat, Float: v}
		case bool:
			return Scalar{Kind: ScalarBool, Bool: v}
		}
		return Scalar{Kind: ScalarOther}
	}
	switch f.kind {
	case rawString:
		return Scalar{Kind: ScalarString, Str: bytesToString(f.raw)}
	case rawNumber:
		return scalarNumber(f.raw)
	case rawBool:
		return Scalar{Kind: ScalarBool, Bool: len(f.raw) == 4} // "true"
	case rawNull:
		return Scalar{}
	}
	return Scalar{Kind: ScalarOther}
}
