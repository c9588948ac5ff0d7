package main

import (
	"bufio"
	"cmp"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// The identity every target is configured with. The issuer's host never
// resolves: only the Flask app fetches from it, through the harness's
// CONNECT proxy (see doc.go).
const (
	issuerHost = "idp.bench.test"
	issuer     = "https://" + issuerHost
	audience   = "https://api.example.com"
	keyID      = "bench-1"
	scope      = "read:messages"

	// tokenLifetime is how long minted tokens stay valid, and so how long
	// the token cache can be reused; minTokenLife is the validity a cached
	// token set must still have to be used for a run.
	tokenLifetime = 30 * 24 * time.Hour
	minTokenLife  = 6 * time.Hour
)

// tokenSet is the key and the tokens of a run: distinct valid tokens for
// the miss runs, one more token (not among them) for the hit runs, probes
// and warm-ups.
type tokenSet struct {
	key      *rsa.PrivateKey
	distinct []string
	hit      string
	minted   int  // distinct tokens minted by this run (the rest came from the cache)
	cached   bool // the key came from the cache
}

// tokenMeta describes a cached token set.
type tokenMeta struct {
	Issuer   string `json:"issuer"`
	Audience string `json:"audience"`
	KeyID    string `json:"kid"`
	Expires  int64  `json:"exp"`
}

// loadTokens returns a key and at least n distinct tokens. With cacheDir
// set it reuses the key and tokens stored there while they are valid for
// minTokenLife more, minting only what is missing; otherwise it mints all.
func loadTokens(cacheDir string, n int, now time.Time) (*tokenSet, error) {
	ts := &tokenSet{}
	exp := now.Add(tokenLifetime)
	if cacheDir != "" {
		key, meta, tokens, err := readTokenCache(cacheDir)
		switch {
		case err == nil && meta.Issuer == issuer && meta.Audience == audience && meta.KeyID == keyID &&
			time.Unix(meta.Expires, 0).After(now.Add(minTokenLife)):
			ts.key, ts.cached = key, true
			exp = time.Unix(meta.Expires, 0)
			if len(tokens) > n {
				tokens = tokens[:n]
			}
			ts.distinct = tokens
		case err != nil && !errors.Is(err, os.ErrNotExist):
			fmt.Fprintf(os.Stderr, "bench: token cache %s unusable, minting anew: %v\n", cacheDir, err)
		}
	}
	if ts.key == nil {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
		ts.key = key
	}
	if missing := n - len(ts.distinct); missing > 0 {
		start := len(ts.distinct)
		more, err := mintMany(ts.key, start, missing, now, exp)
		if err != nil {
			return nil, err
		}
		ts.distinct = append(ts.distinct, more...)
		ts.minted = missing
		if cacheDir != "" {
			if err := writeTokenCache(cacheDir, ts.key, tokenMeta{Issuer: issuer, Audience: audience, KeyID: keyID, Expires: exp.Unix()}, ts.cached, more); err != nil {
				return nil, err
			}
		}
	}
	hit, err := mint(ts.key, "bench-hit", fmt.Sprintf("hit-%d", now.UnixNano()), now, exp)
	if err != nil {
		return nil, err
	}
	ts.hit = hit
	return ts, nil
}

// mintMany signs n tokens with subjects bench-<start>..bench-<start+n-1>,
// on every CPU: RSA-2048 signing costs milliseconds.
func mintMany(key *rsa.PrivateKey, start, n int, now, exp time.Time) ([]string, error) {
	return onEveryCPU(n, func(i int) (string, error) {
		sub := fmt.Sprintf("bench-%07d", start+i)
		return mint(key, sub, sub, now, exp)
	})
}

// onEveryCPU returns f(0) .. f(n-1), computed on every CPU (signing and
// verifying are CPU-bound); the first error stops it.
func onEveryCPU(n int, f func(i int) (string, error)) ([]string, error) {
	out := make([]string, n)
	workers := min(runtime.GOMAXPROCS(0), n)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				s, err := f(i)
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					return
				}
				out[i] = s
			}
		})
	}
	wg.Wait()
	return out, first
}

// mint signs one RS256 token for the bench identity.
func mint(key *rsa.PrivateKey, sub, jti string, now, exp time.Time) (string, error) {
	return signRS256(key, keyID, benchClaims(sub, jti, now, exp))
}

// benchClaims are the claims of a bench token; callers may add to them.
func benchClaims(sub, jti string, now, exp time.Time) map[string]any {
	return map[string]any{
		"iss": issuer, "aud": audience, "sub": sub, "jti": jti, "scope": scope,
		"iat": now.Unix(), "exp": exp.Unix(),
	}
}

// signRS256 signs claims as an RS256 JWT whose header names kid.
func signRS256(key *rsa.PrivateKey, kid string, claims map[string]any) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// tamper returns tok with one signature character changed: well formed,
// signed by nobody. Every target must deny it.
func tamper(tok string) string {
	i := strings.LastIndexByte(tok, '.') + 10
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

// benchJWKS is the public key set every target verifies with.
func benchJWKS(key *rsa.PublicKey) []byte {
	return jwkSet(map[string]*rsa.PublicKey{keyID: key})
}

// jwkSet is a JWKS of RSA signing keys by kid, in kid order.
func jwkSet(keys map[string]*rsa.PublicKey) []byte {
	set := []map[string]string{}
	for _, kid := range slices.Sorted(maps.Keys(keys)) {
		key := keys[kid]
		set = append(set, map[string]string{
			"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
		})
	}
	b, _ := json.Marshal(map[string]any{"keys": set})
	return b
}

// The token cache: key.pem (0600), meta.json and tokens.txt, one token a
// line. It holds a benchmark-only key that signs tokens for an issuer that
// does not exist.
const (
	cacheKeyFile    = "key.pem"
	cacheMetaFile   = "meta.json"
	cacheTokensFile = "tokens.txt"
	maxCachedTokens = 10_000_000
)

func readTokenCache(dir string) (*rsa.PrivateKey, tokenMeta, []string, error) {
	var meta tokenMeta
	raw, err := os.ReadFile(filepath.Join(dir, cacheKeyFile))
	if err != nil {
		return nil, meta, nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, meta, nil, fmt.Errorf("%s: no PEM block", cacheKeyFile)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, meta, nil, fmt.Errorf("%s: %w", cacheKeyFile, err)
	}
	key, ok := parsed.(*rsa.PrivateKey)
	if !ok || key.N.BitLen() != 2048 {
		return nil, meta, nil, fmt.Errorf("%s: not an RSA-2048 key", cacheKeyFile)
	}
	raw, err = os.ReadFile(filepath.Join(dir, cacheMetaFile))
	if err != nil {
		return nil, meta, nil, err
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, meta, nil, fmt.Errorf("%s: %w", cacheMetaFile, err)
	}
	f, err := os.Open(filepath.Join(dir, cacheTokensFile))
	if err != nil {
		return nil, meta, nil, err
	}
	defer f.Close()
	var tokens []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() && len(tokens) < maxCachedTokens {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			tokens = append(tokens, t)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, meta, nil, fmt.Errorf("%s: %w", cacheTokensFile, err)
	}
	return key, meta, tokens, nil
}

// writeTokenCache stores key and meta and appends tokens; with appendOnly
// false it starts the token file afresh (a new key).
func writeTokenCache(dir string, key *rsa.PrivateKey, meta tokenMeta, appendOnly bool, tokens []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if !appendOnly {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, cacheKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return err
		}
		raw, _ := json.Marshal(meta)
		if err := os.WriteFile(filepath.Join(dir, cacheMetaFile), raw, 0o600); err != nil {
			return err
		}
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if !appendOnly {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(filepath.Join(dir, cacheTokensFile), flags, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, t := range tokens {
		w.WriteString(t)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
