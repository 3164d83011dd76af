package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSink("s3", "write Parquet or JSON lines objects to S3 or any S3-compatible store (exactly-once multipart uploads)", true,
		func() *S3Config { return NewS3Config() })
}

// S3Config is the `s3` sink: objects in a bucket of S3 or of any
// S3-compatible store (MinIO, Ceph, R2, ...).
//
//   - s3:
//     bucket: lake
//     path: events               # key prefix in the bucket; default: the bucket's root
//     format: parquet            # parquet (default) | json (JSON lines)
//     schema: { ts: "timestamp(ms)", level: string, status: int64 }
//     partition_by: "dt={{ date(ts) }}"
//     max_file_bytes: 256MiB     # roll an object at this size
//     max_file_age: 10m          # ... or this long after it was opened
//     min_file_bytes: 64MiB      # objects smaller than this wait for more rows (see below)
//     endpoint: https://minio.internal:9000   # default: AWS
//     region: eu-west-1
//     path_style: true           # bucket in the path, not the host name (most S3-compatible stores)
//     access_key_id: AKIA...
//     secret_access_key_file: /run/secrets/s3
//     tls: { ca_file: ca.pem }
//
// plus the options of ColumnarOptions (schema, partition_by, prefix,
// max_open_files, max_buffer_bytes, max_value_bytes, unknown_fields) and,
// with format parquet, those of ParquetConfig (compression,
// row_group_size, dictionary, page_buffer_size). Object keys are
//
//	<path>/<partition>/<prefix>-<n:%06d>-<sink id>.<parquet|jsonl>
//
// with n counting the objects of each partition from 1 (carried in every
// checkpoint, so that a restart goes on with the next one) and sink id 8
// hex digits of a hash of the component id.
//
// # Exactly once
//
// Each object is one multipart upload. Rows go to a local staging file in
// the component's directory under data_dir; as it grows, whole parts of
// part_size bytes are uploaded in the background (at most
// upload_concurrency at once), and when the object is finished (by
// max_file_bytes, max_file_age, max_open_files, or a checkpoint) the rest
// goes as its last part: S3 wants every other part to be at least 5 MiB,
// and the sink never sends a smaller one. An upload is invisible until
// completed, and it is completed only by Commit, once the checkpoint that
// holds it is durable, under the key it was created with. PreCommit
// returns a token with the upload id and the number, ETag and length of
// every part. Commit is idempotent: an upload that is gone (a second
// commit, or one after a crash, or a retried request whose first answer
// was lost) is accepted only if the object under the key is there with the
// sink's x-amz-meta-weir-part and the token's length; a key holding any
// other object is never overwritten. Recover completes the last
// checkpoint's uploads, takes back its open objects, and aborts every
// other upload of the sink under path (ListMultipartUploads), so nothing a
// crashed run started stays behind.
//
// # min_file_bytes
//
// A checkpoint finishes every object that has rows, unless min_file_bytes
// says it is too small, and then it depends on the format:
//
//   - A JSON lines object smaller than min_file_bytes (and younger than
//     max_file_age) stays open across the checkpoint. The bytes the
//     checkpoint holds are in the uploaded parts plus the local staging
//     file (fsynced), and the token names both; after a crash the staging
//     file is cut back to that length and the object is written on, so
//     the objects are byte for byte an uninterrupted run's.
//   - A Parquet object cannot stay open: a Parquet file is readable only
//     with its footer, written when the file is finished. So the small
//     part is finished in the staging directory and held there (not
//     uploaded, not numbered; the token lists it), and the held parts of a
//     partition are merged into one object, their row groups copied as
//     they are, once together they reach min_file_bytes (or max_file_age
//     after the first of them was opened). A crash takes the held parts
//     back from the checkpoint.
//
// Either way the rows of a checkpoint are durable when it completes (in
// the bucket's invisible parts and in data_dir) and visible once their
// object is finished, not at the next checkpoint. A clean stop (the last
// checkpoint committed, nothing written since) finishes every open object
// and merges every held part, so a finite run ends with everything
// visible.
//
// Outside exactly_once every open object is finished and completed at each
// checkpoint's flush, and min_file_bytes does not apply.
type S3Config struct {
	// Parquet holds the columnar options and, with format parquet, the
	// Parquet ones. Its Path is the key prefix.
	Parquet ParquetConfig
	// Format is parquet or json (JSON lines).
	Format string
	// Bucket is the bucket's name. Required.
	Bucket string
	// Endpoint is the store's URL (https://minio.internal:9000); empty for
	// AWS S3.
	Endpoint string
	// Region is the bucket's region; default us-east-1.
	Region string
	// PathStyle puts the bucket in the path instead of the host name.
	PathStyle bool
	// AccessKeyID, with the secret read from SecretAccessKeyFile (and a
	// session token from SessionTokenFile, if any), authenticates requests.
	// When both are empty, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
	// AWS_SESSION_TOKEN are read from the environment; when those are
	// empty too, requests are anonymous.
	AccessKeyID         string
	SecretAccessKeyFile string
	SessionTokenFile    string
	// TLS configures HTTPS to the endpoint.
	TLS *pipeline.TLSOptions
	// MinFileBytes is the size below which a checkpoint does not finish an
	// object under exactly_once: a JSON lines object stays open, a Parquet
	// part is held in staging to be merged (see above). 0, the default:
	// every checkpoint finishes every object.
	MinFileBytes int64
	// PartSize is the size of the parts uploaded while an object grows,
	// 5 MiB to 5 GiB; default 8 MiB. The last part may be smaller.
	PartSize int64
	// UploadConcurrency bounds the part uploads in flight; default 4.
	UploadConcurrency int
	// MaxAttempts is how many times a request is tried before the
	// pipeline fails (retries back off exponentially, with jitter, up to
	// MaxBackoff); default 10.
	MaxAttempts int
	// MaxBackoff is the longest wait between two attempts; default 20s.
	MaxBackoff time.Duration
	// RequestTimeout bounds one attempt of one request; default 2m.
	RequestTimeout time.Duration

	parquetOnly []string // parquet options given, refused with format json
}

// NewS3Config returns a configuration with its defaults set.
func NewS3Config() *S3Config {
	c := &S3Config{Parquet: *NewParquetConfig(), Format: "parquet", Region: "us-east-1",
		PartSize: 8 << 20, UploadConcurrency: 4, MaxAttempts: 10, MaxBackoff: 20 * time.Second, RequestTimeout: 2 * time.Minute}
	c.Parquet.optionalPath = true
	return c
}

// s3Keys are the options of the s3 sink beyond the columnar and Parquet
// ones.
const s3Keys = "format, bucket, endpoint, region, path_style, access_key_id, secret_access_key_file, session_token_file, tls, " +
	"min_file_bytes, part_size, upload_concurrency, max_attempts, max_backoff, request_timeout"

// UnmarshalYAML decodes the options, reporting each problem at its
// position.
func (c *S3Config) UnmarshalYAML(n ast.Node) error {
	err := decodeColumnar(n, "s3", &c.Parquet.ColumnarOptions, parquetKeys+", "+s3Keys, func(opt yamlOption) (bool, error) {
		if known, err := c.Parquet.decodeOption(opt); known {
			c.parquetOnly = append(c.parquetOnly, opt.key)
			return true, err
		}
		var err error
		switch opt.key {
		case "format":
			c.Format, err = yamlString(opt)
			if err == nil && c.Format != "parquet" && c.Format != "json" {
				err = fmt.Errorf("%q is not one of parquet, json", c.Format)
			}
		case "bucket":
			c.Bucket, err = yamlString(opt)
		case "endpoint":
			c.Endpoint, err = yamlString(opt)
		case "region":
			c.Region, err = yamlString(opt)
		case "path_style":
			c.PathStyle, err = yamlBool(opt)
		case "access_key_id":
			c.AccessKeyID, err = yamlString(opt)
		case "secret_access_key_file":
			c.SecretAccessKeyFile, err = yamlString(opt)
		case "session_token_file":
			c.SessionTokenFile, err = yamlString(opt)
		case "tls":
			if opt.value == nil {
				c.TLS = nil
				break
			}
			t := new(pipeline.TLSOptions)
			if err = pipeline.DecodeNode(opt.value, t); err == nil {
				c.TLS = t
			}
		case "min_file_bytes":
			c.MinFileBytes, err = yamlBytes(opt, 0, math.MaxInt64)
		case "part_size":
			c.PartSize, err = yamlBytes(opt, s3MinPartSize, 5<<30)
		case "upload_concurrency":
			var v int64
			v, err = yamlInt(opt, 1, 64)
			c.UploadConcurrency = int(v)
		case "max_attempts":
			var v int64
			v, err = yamlInt(opt, 1, 1000)
			c.MaxAttempts = int(v)
		case "max_backoff":
			c.MaxBackoff, err = yamlDuration(opt)
		case "request_timeout":
			c.RequestTimeout, err = yamlDuration(opt)
		default:
			return false, nil
		}
		return true, err
	})
	if err != nil {
		return err
	}
	if c.Bucket == "" {
		return &pipeline.ConfigError{Pos: c.Parquet.pos, Msg: "s3: bucket is required"}
	}
	if c.Format == "json" && len(c.parquetOnly) > 0 {
		return &pipeline.ConfigError{Pos: c.Parquet.pos, Msg: fmt.Sprintf("s3: %s: Parquet options, and format is json", strings.Join(c.parquetOnly, ", "))}
	}
	return nil
}

// JSONSchema implements pipeline.SchemaProvider.
func (c *S3Config) JSONSchema() map[string]any {
	extra := parquetJSONSchema()
	str := func(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }
	extra["format"] = map[string]any{"enum": []string{"parquet", "json"}, "default": "parquet", "description": "Parquet, or JSON lines"}
	extra["bucket"] = map[string]any{"type": "string", "minLength": 1, "description": "the bucket"}
	extra["endpoint"] = str("the store's URL (https://minio.internal:9000); default AWS S3")
	extra["region"] = map[string]any{"type": "string", "default": "us-east-1"}
	extra["path_style"] = map[string]any{"type": "boolean", "default": false, "description": "bucket in the path, not the host name"}
	extra["access_key_id"] = str("access key id; the secret is read from secret_access_key_file")
	extra["secret_access_key_file"] = str("file holding the secret access key")
	extra["session_token_file"] = str("file holding a session token")
	extra["tls"] = map[string]any{"type": "object", "description": "ca_file, cert_file, key_file, server_name, insecure_skip_verify"}
	extra["min_file_bytes"] = sizeSchema("exactly_once: a smaller object is kept open (json) or held and merged (parquet) across checkpoints", "0")
	extra["part_size"] = sizeSchema("multipart part size, 5MiB to 5GiB", "8MiB")
	extra["upload_concurrency"] = orEnv(map[string]any{"type": "integer", "minimum": 1, "maximum": 64, "default": 4})
	extra["max_attempts"] = orEnv(map[string]any{"type": "integer", "minimum": 1, "maximum": 1000, "default": 10})
	extra["max_backoff"] = map[string]any{"$ref": "#/$defs/duration", "description": "longest wait between attempts; default 20s"}
	extra["request_timeout"] = map[string]any{"$ref": "#/$defs/duration", "description": "one attempt of one request; default 2m"}
	s := columnarJSONSchema("objects in S3 or an S3-compatible store", extra)
	s["required"] = []string{"bucket"}
	props := s["properties"].(map[string]any)
	props["path"] = str("key prefix in the bucket (events/lake); default the bucket's root")
	return s
}

// OutputPath implements pipeline.OutputPather: s3://bucket/path, so that
// `weir validate` refuses two sinks writing to the same place.
func (c *S3Config) OutputPath() string {
	return "s3://" + c.Bucket + "/" + c.keyPrefix()
}

// keyPrefix is path as a key prefix: "" or ending in "/".
func (c *S3Config) keyPrefix() string {
	p := strings.Trim(path.Clean("/"+c.Parquet.Path), "/")
	if p == "" {
		return ""
	}
	return p + "/"
}

// Validate implements pipeline.Validator.
func (c *S3Config) Validate() error {
	errs := []error{c.Parquet.Validate()}
	if c.Bucket == "" {
		errs = append(errs, errors.New("bucket is required"))
	}
	if c.Format != "parquet" && c.Format != "json" {
		errs = append(errs, fmt.Errorf("format: %q is not one of parquet, json", c.Format))
	}
	if p := c.Parquet.Path; strings.HasPrefix(p, "/") || slices.Contains(strings.Split(p, "/"), "..") {
		errs = append(errs, fmt.Errorf("path %q: want a key prefix inside the bucket, such as events/lake (no leading /, no ..)", p))
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("endpoint %q: want a URL such as https://minio.internal:9000", c.Endpoint))
		}
	}
	if c.PartSize < s3MinPartSize || c.PartSize > 5<<30 {
		errs = append(errs, fmt.Errorf("part_size: want 5MiB to 5GiB (S3's limits), got %d", c.PartSize))
	} else if c.Parquet.MaxFileBytes/c.PartSize >= 10000 {
		errs = append(errs, fmt.Errorf("max_file_bytes: an object of %s takes more than 10000 parts of %s (S3's limit); raise part_size", formatBytes(c.Parquet.MaxFileBytes), formatBytes(c.PartSize)))
	}
	if c.MinFileBytes < 0 || c.MinFileBytes > c.Parquet.MaxFileBytes {
		errs = append(errs, fmt.Errorf("min_file_bytes: want 0 to max_file_bytes (%s), got %d", formatBytes(c.Parquet.MaxFileBytes), c.MinFileBytes))
	}
	if c.UploadConcurrency < 1 || c.UploadConcurrency > 64 {
		errs = append(errs, fmt.Errorf("upload_concurrency: want 1 to 64, got %d", c.UploadConcurrency))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("max_attempts: want at least 1, got %d", c.MaxAttempts))
	}
	if c.RequestTimeout <= 0 || c.MaxBackoff <= 0 {
		errs = append(errs, errors.New("request_timeout and max_backoff must be positive"))
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKeyFile == "") {
		errs = append(errs, errors.New("access_key_id and secret_access_key_file go together"))
	}
	errs = append(errs, c.TLS.Validate())
	return errors.Join(errs...)
}

// NewSink implements pipeline.SinkConfig. The sink is a *ColumnarSink whose
// parts go to the bucket (s3_upload.go); it checks the bucket first.
func (c *S3Config) NewSink(b pipeline.Build) (pipeline.Sink, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	client, err := newS3Client(c)
	if err != nil {
		return nil, err
	}
	if err := checkBucket(context.Background(), client, c.Bucket, c.RequestTimeout); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	logger := b.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	remote := &s3Parts{client: client, bucket: c.Bucket, prefix: c.keyPrefix(), partSize: c.PartSize,
		logger: logger, slots: make(chan struct{}, c.UploadConcurrency), ctx: ctx, cancel: cancel}
	var f columnarFormat = jsonLinesFormat{sink: "s3"}
	if c.Format == "parquet" {
		f = &parquetFormat{cfg: &c.Parquet}
	}
	o := c.Parquet.ColumnarOptions
	s, err := newColumnarSinkTo(b, o, f, remote)
	if err != nil {
		cancel()
		return nil, err
	}
	s.minFileBytes = c.MinFileBytes
	if b.Guarantee != pipeline.ExactlyOnce && b.Guarantee != "" {
		// The runtime recovers only exactly_once sinks: clear what a
		// crashed run left (staging files, uploads) here.
		if err := s.Recover(context.Background(), nil); err != nil {
			s.Close(context.Background())
			return nil, err
		}
	}
	return s, nil
}
