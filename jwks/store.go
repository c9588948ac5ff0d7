package jwks

// The last good key set on disk (Config.CacheDir); the package documentation
// says what is stored and what is checked.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/go-json-experiment/json"
)

// DefaultCacheMaxAge is the default of Config.CacheMaxAge.
const DefaultCacheMaxAge = 24 * time.Hour

const (
	storeFormat = 1
	// storeFutureSkew is how far in the future a stored fetch time may be
	// (a clock stepped back since it was written) before the file is
	// refused: its age could not be told.
	storeFutureSkew = 5 * time.Minute
)

// storedFile is the envelope on disk.
type storedFile struct {
	Format    int       `json:"format"`
	Source    string    `json:"source"`
	FetchedAt time.Time `json:"fetched_at"`
	Discovery []byte    `json:"discovery,omitzero"`
	KeySet    []byte    `json:"jwks"`
	SHA256    string    `json:"sha256"`
}

// sum is the envelope's hash: over every other field, each length-prefixed
// so that no two envelopes share an input.
func (f *storedFile) sum() string {
	h := sha256.New()
	field := func(b []byte) {
		_ = binary.Write(h, binary.BigEndian, uint64(len(b)))
		h.Write(b)
	}
	field([]byte("extauthz jwks cache"))
	field(binary.BigEndian.AppendUint64(nil, uint64(f.Format)))
	field([]byte(f.Source))
	field([]byte(f.FetchedAt.UTC().Format(time.RFC3339Nano)))
	field(f.Discovery)
	field(f.KeySet)
	return hex.EncodeToString(h.Sum(nil))
}

// storeSource is what a cache's file is for: the documents it fetches. It
// is the URL without user info (credentials authenticate the fetch, they do
// not choose the document; a hash of them in a file name could be tested
// offline against guesses), query included (Entra serves another key set
// for ?appid=...); with discovery, the issuer too, since the document is
// only good for the issuer it names.
func storeSource(cfg *Config, discURL string) string {
	if discURL != "" {
		return "oidc\n" + cfg.Issuer + "\n" + withoutUserInfo(discURL)
	}
	return "jwks\n" + withoutUserInfo(cfg.URL)
}

func withoutUserInfo(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw // checked in New: not reached
	}
	u.User = nil
	return u.String()
}

// storeName is the file name for source.
func storeName(source string) string {
	h := sha256.Sum256([]byte(source))
	return "jwks-" + hex.EncodeToString(h[:16]) + ".json"
}

// maxStoredBytes bounds a file: both documents at their limits, base64,
// and the envelope.
func (c *Cache) maxStoredBytes() int64 {
	return (c.cfg.MaxBodyBytes+MaxDiscoveryBytes)/3*4 + 16<<10
}

// save writes the documents in force. It runs on Run's goroutine, after the
// refresh released its waiters: a slow disk never holds a lookup.
func (c *Cache) save(ctx context.Context, fetchedAt time.Time) {
	if c.cfg.CacheDir == "" || c.body == nil {
		return
	}
	f := storedFile{Format: storeFormat, Source: c.storeID, FetchedAt: fetchedAt.UTC().Round(0), Discovery: c.discDoc, KeySet: c.body}
	f.SHA256 = f.sum()
	b, err := json.Marshal(&f)
	if err == nil {
		err = writeAtomic(c.cfg.CacheDir, c.storeName, b)
	}
	if err != nil {
		c.log().LogAttrs(ctx, slog.LevelWarn, "jwks: could not store the key set; a restart while the provider is down will not be able to verify tokens until it answers",
			slog.String("dir", c.cfg.CacheDir), slog.String("error", err.Error()))
	}
}

// writeAtomic writes data to dir/name through a temporary file in dir,
// fsynced and renamed, then fsyncs dir. dir is created (0700) if missing.
func writeAtomic(dir, name string, data []byte) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tmp := name + ".tmp-" + rand.Text()[:12]
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = root.Remove(tmp)
		}
	}()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := root.Rename(tmp, name); err != nil {
		return err
	}
	// The rename is durable once the directory is: without this, a crash
	// could leave the old file (harmless) or none.
	if d, err := root.Open("."); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// errNoStoredSet is readStored's answer when there is no file.
var errNoStoredSet = errors.New("no stored key set")

// readStored reads and checks the envelope for this cache: everything but
// the documents themselves, which load checks as it would fetched ones.
func (c *Cache) readStored() (storedFile, error) {
	root, err := os.OpenRoot(c.cfg.CacheDir)
	if errors.Is(err, fs.ErrNotExist) {
		return storedFile{}, errNoStoredSet
	}
	if err != nil {
		return storedFile{}, err
	}
	defer root.Close()
	if fi, err := root.Lstat(c.storeName); errors.Is(err, fs.ErrNotExist) {
		return storedFile{}, errNoStoredSet
	} else if err != nil {
		return storedFile{}, err
	} else if !fi.Mode().IsRegular() {
		return storedFile{}, fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
	}
	file, err := root.Open(c.storeName)
	if err != nil {
		return storedFile{}, err
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return storedFile{}, err
	}
	if err := checkOwner(fi); err != nil {
		return storedFile{}, err
	}
	max := c.maxStoredBytes()
	b, err := io.ReadAll(io.LimitReader(file, max+1))
	if err != nil {
		return storedFile{}, err
	}
	if int64(len(b)) > max {
		return storedFile{}, fmt.Errorf("larger than %d bytes", max)
	}
	var f storedFile
	if err := json.Unmarshal(b, &f, json.RejectUnknownMembers(true)); err != nil {
		return storedFile{}, fmt.Errorf("not a key set file (truncated?): %w", err)
	}
	switch {
	case f.Format != storeFormat:
		return storedFile{}, fmt.Errorf("format %d, want %d", f.Format, storeFormat)
	case f.SHA256 != f.sum():
		return storedFile{}, errors.New("hash mismatch: the file was changed or damaged")
	case f.Source != c.storeID:
		return storedFile{}, errors.New("written for another key set")
	}
	return f, nil
}

// loadStored loads the stored key set, if there is a good one, before the
// first fetch. It never fails: a file it cannot use is ignored with a
// warning.
func (c *Cache) loadStored(ctx context.Context) {
	if c.cfg.CacheDir == "" {
		return
	}
	path := filepath.Join(c.cfg.CacheDir, c.storeName)
	log := c.log().With(slog.String("file", path))
	f, err := c.readStored()
	if errors.Is(err, errNoStoredSet) {
		log.LogAttrs(ctx, slog.LevelInfo, "jwks: no stored key set; waiting for the first fetch")
		return
	}
	var age time.Duration
	var res ParseResult
	var disc Discovery
	if err == nil {
		now := c.cfg.Now()
		age = now.Sub(f.FetchedAt)
		switch {
		case age < -storeFutureSkew:
			err = fmt.Errorf("fetched at %v, in the future", f.FetchedAt)
		case age >= c.cfg.CacheMaxAge:
			err = fmt.Errorf("fetched %v ago, older than the cache max age %v", age.Round(time.Second), c.cfg.CacheMaxAge)
		}
		age = max(age, 0)
	}
	if err == nil && c.discURL != "" {
		disc, err = c.checkDiscovery(f.Discovery)
	}
	if err == nil {
		res, err = Parse(f.KeySet, c.cfg.Algorithms, c.cfg.MaxKeys)
	}
	if err != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "jwks: stored key set ignored", slog.String("why", err.Error()))
		return
	}
	if err := c.store.KeyReplaceAll(ctx, res.Keys); err != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "jwks: stored key set ignored", slog.String("why", err.Error()))
		return
	}
	if c.discURL != "" {
		c.useDiscovery(ctx, disc, f.Discovery)
	}
	c.body = f.KeySet
	c.keys.Store(int64(len(res.Keys)))
	c.noteKeys(res.Keys, c.cfg.Now())
	c.version.Add(1)
	c.loaded.Store(true)
	c.mu.Lock()
	c.origin, c.fetchedAt = SourceDisk, f.FetchedAt
	c.mu.Unlock()
	log.LogAttrs(ctx, slog.LevelInfo, "jwks loaded from disk; verifying with it until the first fetch",
		slog.Int("keys", len(res.Keys)), slog.Int("skipped", len(res.Skipped)), slog.Duration("age", age.Round(time.Second)))
	c.observe(Event{Provider: c.cfg.Name, Document: DocumentKeySet, Result: ResultDisk, Keys: len(res.Keys), Age: age})
}
