// Package s3fake runs an S3 implementation in-process for tests, as kfake
// does for Kafka: github.com/johannesboyne/gofakes3 with its in-memory
// backend, served over real TCP on loopback, so the client under test
// goes through its whole HTTP stack. It can inject faults (an HTTP status
// or a stall for chosen requests), and Proxy cuts connections.
//
//	srv := s3fake.Start(t)
//	srv.CreateBucket(t, "lake")
//	// endpoint srv.URL, path_style: true, any credentials
//	objs := srv.Objects(t, "lake", "")
package s3fake

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Server is a running fake S3.
type Server struct {
	URL    string     // http://127.0.0.1:port
	Client *s3.Client // a client of the server, for assertions

	srv *httptest.Server
	mu  sync.Mutex
	// faults are consumed in order by the requests they match.
	faults []*Fault
	counts map[string]int // requests seen, by Op
}

// Fault makes requests that match fail: Status (500, 503) is answered
// instead of the real answer, or, with Stall, the answer is held back that
// long first (the client's timeout fires). Times is how many matching
// requests it hits; Hit counts them.
type Fault struct {
	Op     string // Op of the request (see Op)
	Status int
	Stall  time.Duration
	Times  int
	Hit    int
}

// Op names what an S3 request does: CreateMultipartUpload, UploadPart,
// CompleteMultipartUpload, AbortMultipartUpload, ListMultipartUploads,
// ListParts, PutObject, GetObject, HeadObject, HeadBucket, other.
func Op(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		return "CreateMultipartUpload"
	case r.Method == http.MethodPut && q.Has("uploadId"):
		return "UploadPart"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case r.Method == http.MethodGet && q.Has("uploads"):
		return "ListMultipartUploads"
	case r.Method == http.MethodGet && q.Has("uploadId"):
		return "ListParts"
	case r.Method == http.MethodPut:
		return "PutObject"
	case r.Method == http.MethodHead && strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 0:
		return "HeadBucket"
	case r.Method == http.MethodHead:
		return "HeadObject"
	case r.Method == http.MethodGet:
		return "GetObject"
	}
	return "other"
}

// Start runs a server until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	fake := gofakes3.New(s3mem.New(), gofakes3.WithIntegrityCheck(true))
	s := &Server{counts: map[string]int{}}
	h := fake.Server()
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := Op(r)
		s.mu.Lock()
		s.counts[op]++
		var hit *Fault
		for _, f := range s.faults {
			if f.Op == op && f.Hit < f.Times {
				f.Hit++
				hit = f
				break
			}
		}
		s.mu.Unlock()
		if hit != nil {
			io.Copy(io.Discard, r.Body)
			if hit.Stall > 0 {
				select {
				case <-time.After(hit.Stall):
				case <-r.Context().Done():
					return
				}
			}
			if hit.Status != 0 {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(hit.Status)
				io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected</Message></Error>`)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	s.URL = s.srv.URL
	s.Client = NewClient(s.URL)
	return s
}

// NewClient returns a path-style client of the fake at url.
func NewClient(url string) *s3.Client {
	return s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(url), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("weir", "weir-secret", "")})
}

// Inject adds a fault; it applies to requests from now on.
func (s *Server) Inject(f *Fault) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
	return f
}

// Hits returns how many requests f has hit.
func (s *Server) Hits(f *Fault) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return f.Hit
}

// Count returns how many requests of op the server has seen.
func (s *Server) Count(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[op]
}

// CreateBucket creates a bucket.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	if _, err := s.Client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}

// Objects returns every object under prefix: key → content.
func (s *Server) Objects(t testing.TB, bucket, prefix string) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	p := s3.NewListObjectsV2Paginator(s.Client, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("list %s: %v", bucket, err)
		}
		for _, o := range page.Contents {
			got, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: o.Key})
			if err != nil {
				t.Fatalf("get %s: %v", *o.Key, err)
			}
			var b bytes.Buffer
			_, err = io.Copy(&b, got.Body)
			got.Body.Close()
			if err != nil {
				t.Fatalf("get %s: %v", *o.Key, err)
			}
			out[*o.Key] = b.Bytes()
		}
	}
	return out
}

// Keys returns the sorted keys of Objects.
func Keys(objs map[string][]byte) []string {
	keys := make([]string, 0, len(objs))
	for k := range objs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Uploads returns the keys of the multipart uploads in progress in bucket,
// one per upload.
func (s *Server) Uploads(t testing.TB, bucket string) []string {
	t.Helper()
	out, err := s.Client.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if noUploadsYet(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("list uploads: %v", err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	sort.Strings(keys)
	return keys
}

// Parts returns how many parts the upload of key has uploaded, 0 when
// there is no upload of key.
func (s *Server) Parts(t testing.TB, bucket, key string) int {
	t.Helper()
	ctx := context.Background()
	out, err := s.Client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket, Prefix: &key})
	if noUploadsYet(err) {
		return 0
	}
	if err != nil {
		t.Fatalf("list uploads: %v", err)
	}
	n := 0
	for _, u := range out.Uploads {
		if aws.ToString(u.Key) != key {
			continue
		}
		parts, err := s.Client.ListParts(ctx, &s3.ListPartsInput{Bucket: &bucket, Key: &key, UploadId: u.UploadId})
		if err != nil {
			t.Fatalf("list parts: %v", err)
		}
		n += len(parts.Parts)
	}
	return n
}

// noUploadsYet is gofakes3's answer to ListMultipartUploads in a bucket
// that never had an upload: NoSuchUpload.
func noUploadsYet(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload"
}
