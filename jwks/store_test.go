package jwks_test

// Cold start from the last good key set: Config.CacheDir. The tests run in
// synctest bubbles (the provider is a fake transport, the clock fake) on a
// real directory.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/jwks"
)

// primeDisk runs a cache with cfg on a provider that serves body, until its
// first fetch has stored the set, and returns the file's path.
func primeDisk(t *testing.T, cfg jwks.Config, body []byte) string {
	t.Helper()
	idp := newFakeIdP(func(r *http.Request, _ int) (*http.Response, error) { return respond(r, 200, body) })
	c, stop := runInBubble(t, idp, cfg)
	synctest.Wait()
	stop()
	if !c.Ready() {
		t.Fatalf("priming cache not ready: %v", c.Status().LastError)
	}
	return jwks.StorePath(c)
}

// envelope reads a stored file as a JSON object.
func envelope(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("stored file is not JSON: %v", err)
	}
	return m
}

func writeEnvelope(t *testing.T, path string, m map[string]any, reseal bool) {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if reseal {
		if b, err = jwks.Reseal(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func down(r *http.Request, _ int) (*http.Response, error) { return respond(r, 503, nil) }

// TestDiskColdStart: a restart while the provider is down verifies tokens
// with the set the previous run stored, says so in Status and to the
// Observer, and the first successful fetch replaces it (and the file).
func TestDiskColdStart(t *testing.T) {
	setA, setB := rsaSet(t, 0, 1), rsaSet(t, 2)
	t0, t2 := mint(t, key(0), "k0"), mint(t, key(2), "k2")
	synctest.Test(t, func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "cache", "jwks") // does not exist yet
		cfg := jwks.Config{CacheDir: dir, MinRefreshInterval: 10 * time.Second, RefreshInterval: 15 * time.Minute, FetchTimeout: 5 * time.Second}
		primed := time.Now()
		path := primeDisk(t, cfg, setA)

		// The file: 0600 in a directory created 0700, named from a hash,
		// holding the set, its source and fetch time, and a hash.
		if !regexp.MustCompile(`^jwks-[0-9a-f]{32}\.json$`).MatchString(filepath.Base(path)) {
			t.Errorf("file name %q, want jwks-<hash>.json", filepath.Base(path))
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("file mode: %v, %v; want 0600", fi.Mode(), err)
		}
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("dir mode: %v, %v; want 0700", fi.Mode(), err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("dir holds %d entries, want 1 (no temporary file left)", len(entries))
		}
		env := envelope(t, path)
		body, _ := base64.StdEncoding.DecodeString(env["jwks"].(string))
		if string(body) != string(setA) || env["source"] != "jwks\nhttps://idp.test/.well-known/jwks.json" ||
			env["fetched_at"] != primed.UTC().Format(time.RFC3339Nano) || len(env["sha256"].(string)) != 64 {
			t.Errorf("envelope: %v", env)
		}

		time.Sleep(time.Hour)
		// The provider is down: the first fetch hangs until FetchTimeout,
		// the next ones get 503 until it is up.
		var up atomic.Bool
		idp := newFakeIdP(func(r *http.Request, n int) (*http.Response, error) {
			switch {
			case n == 0:
				return nil, sleepCtx(r, time.Hour)
			case !up.Load():
				return respond(r, 503, nil)
			}
			return respond(r, 200, setB)
		})
		ev := &events{t: t}
		cfg.Observer = ev
		c, stop := runInBubble(t, idp, cfg)
		defer stop()
		synctest.Wait()

		// While the first fetch hangs, the stored set verifies.
		if !c.Ready() {
			t.Fatal("Ready: got false during the first fetch, want true (from disk)")
		}
		if err := verify(t.Context(), c, t0); err != nil {
			t.Errorf("verify k0 from disk: %v", err)
		}
		st := c.Status()
		if st.Source != jwks.SourceDisk || st.Age != time.Hour || !st.FetchedAt.Equal(primed) || st.Keys != 2 ||
			!st.LastSuccess.IsZero() || st.LastError != nil {
			t.Errorf("Status from disk: %+v; want source disk, age 1h, fetched at %v, 2 keys, no fetch yet", st, primed)
		}
		if got := ev.all(); len(got) != 1 || got[0].Result != jwks.ResultDisk || got[0].Age != time.Hour || got[0].Keys != 2 {
			t.Errorf("events: %+v, want one disk load of 2 keys aged 1h", got)
		}

		time.Sleep(5 * time.Second) // the first fetch times out
		synctest.Wait()
		st = c.Status()
		if !c.Ready() || st.Source != jwks.SourceDisk || !errors.Is(st.LastError, jwks.ErrFetch) || st.Age != time.Hour+5*time.Second {
			t.Errorf("Status after a failed fetch: %+v; want still ready from disk, the error, age 1h5s", st)
		}

		up.Store(true)
		time.Sleep(15 * time.Second) // the retry at 15s fetches set B
		synctest.Wait()
		st = c.Status()
		if st.Source != jwks.SourceFetch || st.Age != 5*time.Second || st.LastError != nil {
			t.Errorf("Status after a fetch: %+v; want source fetch, age 5s", st)
		}
		if err := verify(t.Context(), c, t2); err != nil {
			t.Errorf("verify k2 after the fetch: %v", err)
		}
		if err := verify(t.Context(), c, t0); !errors.Is(err, jwks.ErrKeyNotFound) {
			t.Errorf("verify k0 after the fetch: got %v, want %v (the stored set is replaced)", err, jwks.ErrKeyNotFound)
		}
		env = envelope(t, path)
		body, _ = base64.StdEncoding.DecodeString(env["jwks"].(string))
		if string(body) != string(setB) || env["fetched_at"] != primed.Add(time.Hour+15*time.Second).UTC().Format(time.RFC3339Nano) {
			t.Errorf("stored after the fetch: %s at %v, want set B at 1h15s", body, env["fetched_at"])
		}
	})
}

// TestDiskIgnored: a stored file that is stale, damaged, tampered with,
// for another key set, or not this process's alone never loads, nor any part
// of it: a warning says why, and the cache waits for a fetch.
func TestDiskIgnored(t *testing.T) {
	set, other := rsaSet(t, 0), rsaSet(t, 1)
	encOnly := set0(t, with(rsaJWK(key(0), "k0"), "use", "enc"))
	tok := mint(t, key(0), "k0")
	b64std := base64.StdEncoding.EncodeToString
	tests := []struct {
		name      string
		maxAge    time.Duration
		after     time.Duration // between the store and the restart
		tamper    func(t *testing.T, path string)
		wantWhy   string // in the warning; empty: the file loads
		notLogged bool   // no warning: no file is normal
	}{
		{name: "fresh", after: time.Hour},
		{name: "just under CacheMaxAge", maxAge: 2 * time.Hour, after: 2*time.Hour - time.Second},
		{name: "CacheMaxAge old", after: 24 * time.Hour, wantWhy: "older than the cache max age 24h0m0s"},
		{name: "older than a shorter CacheMaxAge", maxAge: time.Hour, after: 61 * time.Minute, wantWhy: "older than the cache max age 1h0m0s"},
		{name: "no file", tamper: func(t *testing.T, path string) { _ = os.Remove(path) }, notLogged: true},
		{name: "truncated", tamper: func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			_ = os.WriteFile(path, b[:len(b)/2], 0o600)
		}, wantWhy: "not a key set file"},
		{name: "truncated to a valid prefix object", tamper: func(t *testing.T, path string) {
			_ = os.WriteFile(path, []byte(`{"format":1}`), 0o600)
		}, wantWhy: "hash mismatch"},
		{name: "empty", tamper: func(t *testing.T, path string) { _ = os.WriteFile(path, nil, 0o600) }, wantWhy: "not a key set file"},
		{name: "garbage", tamper: func(t *testing.T, path string) {
			_ = os.WriteFile(path, []byte("\x00\xff\xfegarbage"), 0o600)
		}, wantWhy: "not a key set file"},
		{name: "key set changed", tamper: func(t *testing.T, path string) {
			m := envelope(t, path)
			m["jwks"] = b64std(other)
			writeEnvelope(t, path, m, false)
		}, wantWhy: "hash mismatch"},
		{name: "one bit of the key set flipped", tamper: func(t *testing.T, path string) {
			m := envelope(t, path)
			b, _ := base64.StdEncoding.DecodeString(m["jwks"].(string))
			b[len(b)/2] ^= 1
			m["jwks"] = b64std(b)
			writeEnvelope(t, path, m, false)
		}, wantWhy: "hash mismatch"},
		{name: "hash changed", tamper: func(t *testing.T, path string) {
			m := envelope(t, path)
			m["sha256"] = strings.Repeat("0", 64)
			writeEnvelope(t, path, m, false)
		}, wantWhy: "hash mismatch"},
		{name: "fetch time moved later", after: 25 * time.Hour, tamper: func(t *testing.T, path string) {
			m := envelope(t, path)
			at, _ := time.Parse(time.RFC3339Nano, m["fetched_at"].(string))
			m["fetched_at"] = at.Add(24 * time.Hour).Format(time.RFC3339Nano)
			writeEnvelope(t, path, m, false)
		}, wantWhy: "hash mismatch"},
		{name: "resealed, no usable key", tamper: func(t *testing.T, path string) {
			m := envelope(t, path)
			m["jwks"] = b64std(encOnly)
			writeEnvelope(t, path, m, true)
		}, wantWhy: "no usable signing key"},
		{name: "resealed, not a key set", tamper: func(t *testing.T, path string) {
			m := envelope(t, path)
			m["jwks"] = b64std([]byte(`{"keys":[`))
			writeEnvelope(t, path, m, true)
		}, wantWhy: "not a usable JWK Set"},
		{name: "resealed, in the future", tamper: func(t *testing.T, path string) {
			m := envelope(t, path)
			m["fetched_at"] = time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339Nano)
			writeEnvelope(t, path, m, true)
		}, wantWhy: "in the future"},
		{name: "resealed, another key set's", tamper: func(t *testing.T, path string) {
			m := envelope(t, path)
			m["source"] = "jwks\nhttps://other.test/jwks"
			writeEnvelope(t, path, m, true)
		}, wantWhy: "written for another key set"},
		{name: "resealed, another format", tamper: func(t *testing.T, path string) {
			m := envelope(t, path)
			m["format"] = 2
			writeEnvelope(t, path, m, true)
		}, wantWhy: "format 2"},
		{name: "an unknown member", tamper: func(t *testing.T, path string) {
			m := envelope(t, path)
			m["keys_too"] = "x" // not covered by the hash: refused all the same
			writeEnvelope(t, path, m, false)
		}, wantWhy: "not a key set file"},
		{name: "a duplicate member", tamper: func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			b = append([]byte(`{"jwks":"`+b64std(other)+`",`), b[1:]...)
			_ = os.WriteFile(path, b, 0o600)
		}, wantWhy: "not a key set file"},
		{name: "owned by another user", tamper: func(t *testing.T, path string) {
			if os.Geteuid() != 0 {
				t.Skip("only root can give a file away")
			}
			if err := os.Chown(path, 65534, 65534); err != nil {
				t.Skip(err)
			}
		}, wantWhy: "owned by uid 65534"},
		{name: "group-writable", tamper: func(t *testing.T, path string) { _ = os.Chmod(path, 0o620) }, wantWhy: "writable by others"},
		{name: "world-writable", tamper: func(t *testing.T, path string) { _ = os.Chmod(path, 0o606) }, wantWhy: "writable by others"},
		{name: "a symlink", tamper: func(t *testing.T, path string) {
			_ = os.Rename(path, path+".real")
			_ = os.Symlink(filepath.Base(path)+".real", path)
		}, wantWhy: "not a regular file"},
		{name: "a symlink out of the directory", tamper: func(t *testing.T, path string) {
			outside := filepath.Join(t.TempDir(), "elsewhere.json")
			_ = os.Rename(path, outside)
			_ = os.Symlink(outside, path)
		}, wantWhy: "not a regular file"},
		{name: "a directory", tamper: func(t *testing.T, path string) {
			_ = os.Remove(path)
			_ = os.Mkdir(path, 0o700)
		}, wantWhy: "not a regular file"},
		{name: "too large", tamper: func(t *testing.T, path string) {
			_ = os.WriteFile(path, []byte(`{"jwks":"`+strings.Repeat("A", 200<<10)+`"}`), 0o600)
		}, wantWhy: "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := jwks.Config{CacheDir: t.TempDir(), CacheMaxAge: tc.maxAge, MaxBodyBytes: 8 << 10}
				path := primeDisk(t, cfg, set)
				if tc.tamper != nil {
					tc.tamper(t, path)
				}
				time.Sleep(tc.after)
				var logs testutil.Buffer
				cfg.Logger = slogText(&logs)
				c, stop := runInBubble(t, newFakeIdP(down), cfg)
				synctest.Wait()
				stop()
				warning := lineWith(logs.String(), "stored key set ignored")
				if tc.wantWhy == "" && !tc.notLogged {
					if !c.Ready() || c.Status().Source != jwks.SourceDisk || warning != "" {
						t.Fatalf("Ready %t, Source %q, warning %q; want the stored set loaded", c.Ready(), c.Status().Source, warning)
					}
					if err := verify(t.Context(), c, tok); err != nil {
						t.Errorf("verify: %v", err)
					}
					return
				}
				if c.Ready() || c.Status().Source != jwks.SourceNone {
					t.Errorf("Ready %t, Source %q; want the stored set ignored", c.Ready(), c.Status().Source)
				}
				if err := verify(t.Context(), c, tok); !errors.Is(err, jwks.ErrNotReady) {
					t.Errorf("verify: got %v, want %v", err, jwks.ErrNotReady)
				}
				// The disk is not the fetch: LastError is the fetch's.
				if se, ok := errors.AsType[*jwks.StatusError](c.Status().LastError); !ok || se.Code != 503 {
					t.Errorf("LastError: got %v, want the fetch's 503", c.Status().LastError)
				}
				if tc.notLogged {
					if warning != "" || !strings.Contains(logs.String(), "no stored key set") {
						t.Errorf("log: %q, want an Info that there is no stored set and no warning", logs.String())
					}
					return
				}
				if !strings.Contains(warning, "level=WARN") || !strings.Contains(warning, tc.wantWhy) || !strings.Contains(warning, filepath.Base(path)) {
					t.Errorf("warning: %q, want a WARN naming the file and %q", warning, tc.wantWhy)
				}
			})
		})
	}
}

// set0 is set without the testing.TB first (for table literals).
func set0(t testing.TB, keys ...map[string]any) []byte { return set(t, keys...) }

// TestDiskUnwritable: a CacheDir that cannot be created, read or written is
// a warning: the cache fetches and serves as without one.
func TestDiskUnwritable(t *testing.T) {
	body := rsaSet(t, 0)
	tests := []struct {
		name     string
		dir      func(t *testing.T) string
		wantLoad string // in the start's warning, if any
	}{
		{name: "a file", dir: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "file")
			_ = os.WriteFile(p, nil, 0o600)
			return p
		}, wantLoad: "not a directory"},
		{name: "under a file", dir: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "file")
			_ = os.WriteFile(p, nil, 0o600)
			return filepath.Join(p, "jwks")
		}, wantLoad: "not a directory"},
		{name: "read-only", dir: func(t *testing.T) string {
			if os.Geteuid() == 0 {
				t.Skip("root writes to read-only directories")
			}
			p := t.TempDir()
			_ = os.Chmod(p, 0o500)
			t.Cleanup(func() { _ = os.Chmod(p, 0o700) })
			return p
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var logs testutil.Buffer
				idp := newFakeIdP(func(r *http.Request, _ int) (*http.Response, error) { return respond(r, 200, body) })
				c, stop := runInBubble(t, idp, jwks.Config{CacheDir: tc.dir(t), Logger: slogText(&logs)})
				synctest.Wait()
				stop()
				if !c.Ready() || c.Status().Source != jwks.SourceFetch {
					t.Errorf("Ready %t, Source %q; want the fetched set", c.Ready(), c.Status().Source)
				}
				if w := lineWith(logs.String(), "could not store the key set"); !strings.Contains(w, "level=WARN") {
					t.Errorf("log: %q, want a WARN that the set could not be stored", logs.String())
				}
				if tc.wantLoad != "" {
					if w := lineWith(logs.String(), "stored key set ignored"); !strings.Contains(w, "level=WARN") || !strings.Contains(w, tc.wantLoad) {
						t.Errorf("start warning: %q, want a WARN with %q", w, tc.wantLoad)
					}
				}
			})
		})
	}
}

// TestDiskNotTouchedByNew: New does no disk I/O; Run creates the directory
// when it first stores a set.
func TestDiskNotTouchedByNew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "jwks")
	c, err := jwks.New(jwks.Config{URL: "https://idp.test/jwks", CacheDir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after New: stat %s: %v, want it not to exist", dir, err)
	}
	if c.Ready() {
		t.Error("Ready after New")
	}
}

// TestDiskNotModified: a 304 rewrites the file with the time of the
// confirmation, so that a set the provider keeps confirming never ages out.
func TestDiskNotModified(t *testing.T) {
	body := rsaSet(t, 0)
	synctest.Test(t, func(t *testing.T) {
		idp := newFakeIdP(func(r *http.Request, n int) (*http.Response, error) {
			if n == 0 {
				return respondH(r, 200, body, hdr("ETag", `"1"`))
			}
			return respondH(r, 304, nil, nil)
		})
		start := time.Now()
		c, stop := runInBubble(t, idp, jwks.Config{CacheDir: t.TempDir(), MinRefreshInterval: time.Second, RefreshInterval: time.Hour})
		defer stop()
		synctest.Wait()
		path := jwks.StorePath(c)
		if got := envelope(t, path)["fetched_at"]; got != start.UTC().Format(time.RFC3339Nano) {
			t.Errorf("fetched_at after the 200: %v", got)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		m := envelope(t, path)
		b, _ := base64.StdEncoding.DecodeString(m["jwks"].(string))
		if m["fetched_at"] != start.Add(time.Hour).UTC().Format(time.RFC3339Nano) || string(b) != string(body) {
			t.Errorf("after the 304: fetched_at %v, body %s; want an hour later, the same body", m["fetched_at"], b)
		}
	})
}

// TestDiskDiscovery: with discovery, the file holds the document too; a cold
// start loads both (the key set's location comes from the stored document),
// and a file stored for another issuer is another file.
func TestDiskDiscovery(t *testing.T) {
	const (
		issuer = "https://idp.test/"
		wk     = "https://idp.test/.well-known/openid-configuration"
		keys   = "https://keys.idp.test/certs"
	)
	doc, set := discoveryDoc(t, issuer, keys), rsaSet(t, 0)
	tok := mint(t, key(0), "k0")
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		cfg := jwks.Config{Discovery: true, Issuer: issuer, CacheDir: dir}
		rt := newRouter(map[string]func(r *http.Request, n int) (*http.Response, error){wk: static(doc), keys: static(set)})
		c, stop := runInBubble(t, newFakeIdP(rt.answer), cfg)
		synctest.Wait()
		stop()
		path := jwks.StorePath(c)
		m := envelope(t, path)
		stored, _ := base64.StdEncoding.DecodeString(m["discovery"].(string))
		if string(stored) != string(doc) || m["source"] != "oidc\n"+issuer+"\n"+wk {
			t.Errorf("stored: source %q, discovery %s", m["source"], stored)
		}

		time.Sleep(time.Hour)
		c, stop = runInBubble(t, newFakeIdP(down), cfg)
		synctest.Wait()
		stop()
		if st := c.Status(); !c.Ready() || st.Source != jwks.SourceDisk || st.KeySetURL != keys {
			t.Errorf("cold start: Ready %t, Status %+v; want loaded from disk, key set URL %q", c.Ready(), st, keys)
		}
		if err := verify(t.Context(), c, tok); err != nil {
			t.Errorf("verify: %v", err)
		}

		// Another issuer (the trailing slash dropped): another file, nothing
		// loaded.
		cfg.Issuer = strings.TrimSuffix(issuer, "/")
		c, stop = runInBubble(t, newFakeIdP(down), cfg)
		synctest.Wait()
		stop()
		if c.Ready() || jwks.StorePath(c) == path {
			t.Errorf("another issuer: Ready %t, file %s; want not ready, another file", c.Ready(), jwks.StorePath(c))
		}

		// A stored document that names another issuer is refused even with
		// a matching hash.
		cfg.Issuer = issuer
		m["discovery"] = base64.StdEncoding.EncodeToString(discoveryDoc(t, "https://evil.test/", keys))
		writeEnvelope(t, path, m, true)
		var logs testutil.Buffer
		cfg.Logger = slogText(&logs)
		c, stop = runInBubble(t, newFakeIdP(down), cfg)
		synctest.Wait()
		stop()
		if w := lineWith(logs.String(), "stored key set ignored"); c.Ready() || !strings.Contains(w, "another issuer") {
			t.Errorf("stored document of another issuer: Ready %t, warning %q", c.Ready(), w)
		}
	})
}

// TestStoreNames: what a file name is derived from. The whole URL, query
// included, without the user info; with discovery, the issuer and the
// discovery URL.
func TestStoreNames(t *testing.T) {
	name := func(cfg jwks.Config) string {
		cfg.CacheDir, cfg.Logger = "/d", quietLogger()
		c, err := jwks.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Base(jwks.StorePath(c))
	}
	u := func(s string) jwks.Config { return jwks.Config{URL: s} }
	d := func(iss, url string) jwks.Config { return jwks.Config{Discovery: true, Issuer: iss, DiscoveryURL: url} }
	tests := []struct {
		name string
		a, b jwks.Config
		same bool
	}{
		{name: "same URL", a: u("https://idp.test/jwks"), b: u("https://idp.test/jwks"), same: true},
		{name: "credentials are not part of it", a: u("https://idp.test/jwks"), b: u("https://user:pw@idp.test/jwks"), same: true},
		{name: "the query is (Entra ?appid=)", a: u("https://idp.test/keys?appid=1"), b: u("https://idp.test/keys?appid=2")},
		{name: "the path is", a: u("https://idp.test/a/jwks"), b: u("https://idp.test/b/jwks")},
		{name: "the port is", a: u("https://idp.test/jwks"), b: u("https://idp.test:8443/jwks")},
		{name: "the scheme is", a: u("https://idp.test/jwks"), b: u("http://idp.test/jwks")},
		{name: "discovery is not a plain key set", a: u("https://idp.test/.well-known/openid-configuration"), b: d("https://idp.test", "")},
		{name: "the issuer is", a: d("https://idp.test", ""), b: d("https://idp.test/", "https://idp.test/.well-known/openid-configuration")},
		{name: "the discovery URL is", a: d("https://idp.test", ""), b: d("https://idp.test", "https://cfg.test/oidc")},
		{name: "the default discovery URL is the explicit one", a: d("https://idp.test", ""), b: d("https://idp.test", "https://idp.test/.well-known/openid-configuration"), same: true},
		{name: "the name is not", a: jwks.Config{Name: "a", URL: "https://idp.test/jwks"}, b: jwks.Config{Name: "b", URL: "https://idp.test/jwks"}, same: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if a, b := name(tc.a), name(tc.b); (a == b) != tc.same {
				t.Errorf("names %s and %s: same %t, want %t", a, b, a == b, tc.same)
			}
		})
	}
}
