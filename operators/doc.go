// Package operators holds weir's built-in operators: parse, filter, map,
// drop_fields and keep_fields, rename, flatten, unnest (explode), sample,
// throttle, window, dedupe, lookup (enrichment from a file, a PostgreSQL
// query or Redis: lookup.go and one file per table kind), and repartition
// (the end of the first half of a pipeline the loader splits at it:
// pipeline/repartition.go). Each registers itself with pipeline.Default
// in an init function; importing the package (for its side effect) makes
// them available to YAML pipelines.
//
//	operators:
//	  - parse: { format: json }
//	  - filter: 'level == "error"'
//	  - map: { alert: 'status >= 500', service: 'lower(service)' }
//	  - drop_fields: [msg]
package operators
