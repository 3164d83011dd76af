package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// s3MinPartSize is the smallest part S3 accepts but for the last one of an
// upload. gofakes3 does not enforce it; the sink never relies on that.
const s3MinPartSize = 5 << 20

// s3PartMeta is the user metadata key (x-amz-meta-weir-part) by which the
// sink knows an object as the one a commit token names.
const s3PartMeta = "weir-part"

// s3Parts is the partRemote of the s3 sink: each part is one multipart
// upload, created when the part has its first part-size worth of bytes (or
// when it is finished, for a small part), with parts of exactly partSize
// bytes uploaded in the background as the local staging file grows, and
// the rest uploaded as the last part when the part is finished.
// CompleteMultipartUpload is called only by publish, at commit.
type s3Parts struct {
	client   *s3.Client
	bucket   string
	prefix   string // key prefix: "" or ending in "/"
	partSize int64
	logger   *slog.Logger

	// slots bounds the part uploads in flight across all parts; the
	// writer goroutine blocks on it when they are all busy (backpressure).
	slots  chan struct{}
	ctx    context.Context // cancelled by close: in-flight uploads stop
	cancel context.CancelFunc
}

// objectUpload is the upload of one part. Fields without a comment are
// the writer goroutine's; mu guards done and err, which the upload
// goroutines fill in.
type objectUpload struct {
	key    string
	meta   string
	id     string   // upload id; "" until created
	rf     *os.File // read-only view of the staging file, for the uploads
	next   int64    // bytes handed to part uploads
	nextN  int32    // number of the next part
	opened time.Time
	wg     sync.WaitGroup // part uploads in flight

	mu   sync.Mutex
	done []objectPart // uploaded parts, in any order
	err  error        // the first failed upload
}

func (r *s3Parts) name() string { return "s3" }

func (r *s3Parts) opened(p *part) error {
	rf, err := os.Open(p.path)
	if err != nil {
		return fmt.Errorf("s3: open part: %w", err)
	}
	p.obj = &objectUpload{key: r.prefix + p.final, meta: fileBase(p.path), rf: rf, nextN: 1, opened: p.opened}
	return nil
}

// wrote starts part uploads for every whole part size of bytes that has
// reached the staging file.
func (r *s3Parts) wrote(p *part) error {
	u := p.obj
	if err := u.failed(); err != nil {
		return err
	}
	written := p.file.n - int64(p.file.w.Buffered())
	for written-u.next >= r.partSize {
		if err := r.startPart(u, u.next, r.partSize); err != nil {
			return err
		}
	}
	return nil
}

func (u *objectUpload) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// create starts the multipart upload of u.
func (r *s3Parts) create(u *objectUpload) error {
	if u.id != "" {
		return nil
	}
	out, err := r.client.CreateMultipartUpload(r.ctx, &s3.CreateMultipartUploadInput{
		Bucket: &r.bucket, Key: &u.key, Metadata: map[string]string{s3PartMeta: u.meta},
	})
	if err != nil {
		return fmt.Errorf("s3: start upload of %s: %w", u.key, err)
	}
	u.id = aws.ToString(out.UploadId)
	return nil
}

// startPart uploads bytes [off, off+size) of the staging file as part
// u.nextN, in the background once a slot is free.
func (r *s3Parts) startPart(u *objectUpload, off, size int64) error {
	if err := r.create(u); err != nil {
		return err
	}
	select {
	case r.slots <- struct{}{}:
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
	n := u.nextN
	u.nextN++
	u.next += size
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer func() { <-r.slots }()
		part, err := r.uploadPart(u, n, off, size)
		u.mu.Lock()
		defer u.mu.Unlock()
		if err != nil {
			if u.err == nil {
				u.err = err
			}
			return
		}
		u.done = append(u.done, part)
	}()
	return nil
}

// uploadPart uploads one part. The SDK retries 5xx answers, throttling,
// timeouts and cut connections (see s3Client), reading the section of the
// file again each time.
func (r *s3Parts) uploadPart(u *objectUpload, n int32, off, size int64) (objectPart, error) {
	out, err := r.client.UploadPart(r.ctx, &s3.UploadPartInput{
		Bucket: &r.bucket, Key: &u.key, UploadId: &u.id, PartNumber: aws.Int32(n),
		ContentLength: aws.Int64(size), Body: io.NewSectionReader(u.rf, off, size),
	})
	if err != nil {
		return objectPart{}, fmt.Errorf("s3: upload part %d of %s: %w", n, u.key, err)
	}
	return objectPart{N: n, ETag: aws.ToString(out.ETag), Bytes: size}, nil
}

// uploaded returns the parts uploaded so far that follow each other from
// part 1, and the bytes they cover.
func (u *objectUpload) uploaded() ([]objectPart, int64) {
	u.mu.Lock()
	parts := slices.Clone(u.done)
	u.mu.Unlock()
	slices.SortFunc(parts, func(a, b objectPart) int { return int(a.N - b.N) })
	var bytes int64
	for i, p := range parts {
		if p.N != int32(i+1) {
			return parts[:i], bytes
		}
		bytes += p.Bytes
	}
	return parts, bytes
}

func (r *s3Parts) finish(p *part) (*objectEntry, error) {
	u := p.obj
	u.wg.Wait()
	if err := u.failed(); err != nil {
		return nil, err
	}
	if rest := p.file.n - u.next; rest > 0 || u.nextN == 1 {
		// The last part may be smaller than the part size.
		if err := r.create(u); err != nil {
			return nil, err
		}
		part, err := r.uploadPart(u, u.nextN, u.next, rest)
		if err != nil {
			return nil, err
		}
		u.nextN++
		u.next += rest
		u.done = append(u.done, part)
	}
	parts, bytes := u.uploaded()
	if bytes != p.file.n || len(parts) != int(u.nextN-1) {
		return nil, fmt.Errorf("s3: %s: %d parts uploaded cover %d bytes, the part has %d", u.key, len(parts), bytes, p.file.n)
	}
	u.rf.Close()
	return &objectEntry{Key: u.key, Upload: u.id, Parts: parts, Opened: u.opened.UnixMilli(), Meta: u.meta}, nil
}

func (r *s3Parts) snapshot(p *part) (*objectEntry, error) {
	u := p.obj
	if err := u.failed(); err != nil {
		return nil, err
	}
	parts, _ := u.uploaded()
	return &objectEntry{Key: u.key, Upload: u.id, Parts: parts, Open: true, Opened: u.opened.UnixMilli(), Meta: u.meta}, nil
}

func (r *s3Parts) discard(p *part) {
	if u := p.obj; u != nil {
		u.wg.Wait()
		u.rf.Close()
		p.obj = nil
	}
}

func (r *s3Parts) drop(ctx context.Context, p *part) error {
	u := p.obj
	if u == nil {
		return nil
	}
	r.discard(p)
	if u.id == "" {
		return nil
	}
	_, err := r.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &r.bucket, Key: &u.key, UploadId: &u.id})
	if err != nil && !isNoSuchUpload(err) {
		return fmt.Errorf("s3: abort the upload of %s: %w", u.key, err)
	}
	return nil
}

// exists reports whether an object is under key (relative to the prefix).
func (r *s3Parts) exists(ctx context.Context, key string) (bool, error) {
	full := r.prefix + key
	_, err := r.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &r.bucket, Key: &full})
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("s3: look up %s: %w", full, err)
	}
	return true, nil
}

func (r *s3Parts) close() { r.cancel() }

// resume takes an open part back from its entry: the uploaded parts stay,
// the next part starts where they end. visible says a clean stop already
// made the object visible, with the bytes the entry holds.
func (r *s3Parts) resume(ctx context.Context, f tokenFile, p *part) (bool, error) {
	e := f.Object
	if e.Upload != "" {
		_, err := r.client.ListParts(ctx, &s3.ListPartsInput{Bucket: &r.bucket, Key: &e.Key, UploadId: &e.Upload, MaxParts: aws.Int32(1)})
		switch {
		case isNoSuchUpload(err):
			ok, herr := r.isOurs(ctx, e, f.Bytes)
			if herr != nil {
				return false, herr
			}
			if !ok {
				return false, fmt.Errorf("s3: the upload of open part %s is gone, and the object is not there: its %d bytes are lost", e.Key, f.Bytes)
			}
			return true, nil
		case err != nil:
			return false, fmt.Errorf("s3: look up the upload of open part %s: %w", e.Key, err)
		}
	} else if ok, err := r.isOurs(ctx, e, f.Bytes); err != nil {
		return false, err
	} else if ok {
		return true, nil
	}
	rf, err := os.Open(p.path)
	if err != nil {
		return false, fmt.Errorf("s3: the staging file of open part %s is gone: %w", e.Key, err)
	}
	u := &objectUpload{key: e.Key, meta: e.Meta, id: e.Upload, rf: rf, nextN: int32(len(e.Parts)) + 1, opened: time.UnixMilli(e.Opened)}
	for i, part := range e.Parts {
		if part.N != int32(i+1) {
			rf.Close()
			return false, fmt.Errorf("s3: bad commit token: part %d of %s is numbered %d", i+1, e.Key, part.N)
		}
		u.next += part.Bytes
	}
	if u.next > f.Bytes {
		rf.Close()
		return false, fmt.Errorf("s3: bad commit token: the parts of %s cover %d bytes, the part has %d", e.Key, u.next, f.Bytes)
	}
	u.done = slices.Clone(e.Parts)
	p.obj = u
	return false, nil
}

// isOurs reports whether the object e names is there and is the one the
// token describes: the sink's metadata and the length.
func (r *s3Parts) isOurs(ctx context.Context, e *objectEntry, size int64) (bool, error) {
	out, err := r.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &r.bucket, Key: &e.Key})
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("s3: look up %s: %w", e.Key, err)
	}
	meta := out.Metadata[s3PartMeta]
	if meta != e.Meta || aws.ToInt64(out.ContentLength) != size {
		return false, fmt.Errorf("s3: object %s exists and is not the part this commit makes visible (%d bytes, metadata %s=%q; want %d bytes, %q); refusing to overwrite it",
			e.Key, aws.ToInt64(out.ContentLength), s3PartMeta, meta, size, e.Meta)
	}
	return true, nil
}

// publish completes the uploads of finished parts. It is idempotent: an
// upload that is gone (completed before, here or before a crash) is
// checked against the object in its place, which must be the one the
// token describes; an object under the key that is not is never
// overwritten.
func (r *s3Parts) publish(ctx context.Context, files []tokenFile) error {
	for _, f := range files {
		e := f.Object
		if e.Upload == "" || len(e.Parts) == 0 {
			return fmt.Errorf("s3: bad commit token: finished part %s has no uploaded parts", e.Key)
		}
		// A key taken by somebody else's object (a run from a fresh
		// data_dir) is refused before anything is replaced.
		if ok, err := r.isOurs(ctx, e, f.Bytes); err != nil {
			return err
		} else if ok {
			r.abortQuietly(ctx, e)
			continue
		}
		parts := make([]types.CompletedPart, len(e.Parts))
		for i, p := range e.Parts {
			parts[i] = types.CompletedPart{PartNumber: aws.Int32(p.N), ETag: aws.String(p.ETag)}
		}
		_, err := r.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &r.bucket, Key: &e.Key, UploadId: &e.Upload, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
		if err == nil {
			continue
		}
		if !isNoSuchUpload(err) {
			return fmt.Errorf("s3: complete %s: %w", e.Key, err)
		}
		// Completed by an attempt whose answer was lost (the SDK retried).
		ok, herr := r.isOurs(ctx, e, f.Bytes)
		if herr != nil {
			return herr
		}
		if !ok {
			return fmt.Errorf("s3: the upload of %s is gone and the object is not there: the part is lost", e.Key)
		}
	}
	return nil
}

// abortQuietly aborts an upload that may be gone already.
func (r *s3Parts) abortQuietly(ctx context.Context, e *objectEntry) {
	_, err := r.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &r.bucket, Key: &e.Key, UploadId: &e.Upload})
	if err != nil && !isNoSuchUpload(err) {
		r.logger.Warn("s3: abort a completed upload", "key", e.Key, "err", err)
	}
}

func (r *s3Parts) abortOthers(ctx context.Context, keep map[string]bool, suffix string) error {
	in := &s3.ListMultipartUploadsInput{Bucket: &r.bucket}
	if r.prefix != "" {
		in.Prefix = &r.prefix
	}
	aborted := 0
	for {
		out, err := r.client.ListMultipartUploads(ctx, in)
		if isNoSuchUpload(err) {
			break // gofakes3's answer for a bucket that never had an upload
		}
		if err != nil {
			return fmt.Errorf("s3: list uploads left behind: %w", err)
		}
		for _, up := range out.Uploads {
			key, id := aws.ToString(up.Key), aws.ToString(up.UploadId)
			if !strings.HasPrefix(key, r.prefix) || !strings.HasSuffix(key, suffix) || keep[id] {
				continue
			}
			_, err := r.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &r.bucket, Key: &key, UploadId: &id})
			if err != nil && !isNoSuchUpload(err) {
				return fmt.Errorf("s3: abort upload left behind of %s: %w", key, err)
			}
			aborted++
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
	if aborted > 0 {
		r.logger.Info("s3: aborted uploads written after the last complete checkpoint", "uploads", aborted)
	}
	return nil
}

func isNoSuchUpload(err error) bool {
	var nsu *types.NoSuchUpload
	var ae smithy.APIError
	return errors.As(err, &nsu) || (errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload")
}

func isNotFound(err error) bool {
	var nf *types.NotFound
	var nsk *types.NoSuchKey
	var ae smithy.APIError
	return errors.As(err, &nf) || errors.As(err, &nsk) || (errors.As(err, &ae) && (ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchKey"))
}

func fileBase(p string) string {
	if i := strings.LastIndexAny(p, `/\`); i >= 0 {
		return p[i+1:]
	}
	return p
}
