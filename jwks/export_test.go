package jwks

import (
	"path/filepath"
	"time"

	"github.com/go-json-experiment/json"
)

// SetJitter replaces the jitter of c's scheduled refreshes, so that a test
// can pin the schedule. Call it before Run.
func SetJitter(c *Cache, f func(time.Duration) time.Duration) { c.jitter = f }

// Jitter is the cache's jitter function.
var Jitter = jitter

// StorePath returns the path of c's file in its CacheDir.
func StorePath(c *Cache) string { return filepath.Join(c.cfg.CacheDir, c.storeName) }

// Reseal recomputes the hash of a stored file, as whoever can write the
// directory could.
func Reseal(b []byte) ([]byte, error) {
	var f storedFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	f.SHA256 = f.sum()
	return json.Marshal(&f)
}
