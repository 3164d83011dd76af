// Package pipeline is weir's pipeline model: the Record that flows through a
// pipeline, the Batch it travels in, the Source, Operator and Sink
// interfaces a component implements, the Registry components register into
// by name, and the loader that turns pipelines.yaml into validated Specs
// with file:line:column on every error.
//
// A component is a typed configuration struct that the YAML decodes into
// (defaults set by its constructor, checked by an optional Validate) and
// that builds the running component:
//
//	type UpperConfig struct{ Field string `yaml:"field"` }
//
//	func (c *UpperConfig) NewOperator(b pipeline.Build) (pipeline.Operator, error) {
//		return upper{field: c.Field}, nil
//	}
//
//	type upper struct{ field string }
//
//	func (u upper) Process(_ context.Context, b *pipeline.Batch) error {
//		for _, r := range b.Records {
//			if s, ok := r.Get(u.field).(string); ok {
//				r.Set(u.field, strings.ToUpper(s))
//			}
//		}
//		return nil
//	}
//
//	func init() {
//		pipeline.RegisterOperator("upper", "upper-case a field",
//			func() *UpperConfig { return &UpperConfig{Field: "message"} })
//	}
//
// after which `- upper: { field: msg }` works in any pipeline.
//
// Optional capabilities are small interfaces found by type assertion. On
// running components (component.go, unless named):
//   - sources: Positioned (replayable), WatermarkSource (a source's own
//     watermark), SplitSource (several splits at once: Kafka partitions,
//     files; Record.Split), TaskSource (splits that are scale-out tasks);
//   - operators: Snapshotter and Finisher (stateful), WatermarkHandler,
//     SplitHandler (per-split watermarks), Ticker (wall-clock work),
//     Stateless (the runtime may run it on every core);
//   - sinks: Committer (two-phase commit), TaskStore (keeps task truths:
//     task.go), Flusher, RecordChecker;
//   - for metrics: Lagger and SplitLagger (source backlog, in all and per
//     split), SplitWatermarker (per-split watermarks of event-time
//     operators) and LateCounter.
//
// On configurations: SourceConfig, OperatorConfig and SinkConfig (what
// builds each kind), Validator, GuaranteeWarner (warnings for `validate`),
// TaskStoreConfig, TaskSourceConfig, KeyedConfig, OutputPather
// (`validate`'s shared-path check), OutputOwner (the run-time output
// locks), DedupeWindower (the horizon of a source's seen message ids:
// dedupe_window.go), Repartitioner and EventTimed (a repartition operator,
// which the loader splits a pipeline at, and the event time it reports
// progress in: repartition.go), BareWordReader and FieldDeclarer (the
// bare-word warnings: bareword.go), and OptionDescriber and SchemaProvider
// (`weir schema`: jsonschema.go).
package pipeline
