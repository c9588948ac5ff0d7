package integration_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// soakKey is one RSA signing key of the soak test's identity provider.
type soakKey struct {
	kid  string
	priv *rsa.PrivateKey
}

func newSoakKey(kid string) (*soakKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate key %s: %w", kid, err)
	}
	return &soakKey{kid: kid, priv: priv}, nil
}

// jwk is the key's public half as a JWKS entry.
func (k *soakKey) jwk() map[string]string {
	return map[string]string{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": k.kid,
		"n": base64.RawURLEncoding.EncodeToString(k.priv.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.priv.E)).Bytes()),
	}
}

// soakClaims are the claims of one minted token.
type soakClaims struct {
	sub, aud, scope string
	iat, exp        time.Time
}

// mint signs c with k under kid (which need not be k's own: a forger signs
// with its key under a published kid).
func (k *soakKey) mint(kid string, c soakClaims) (string, error) {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": soakIssuer, "sub": c.sub, "aud": c.aud, "scope": c.scope,
		"iat": c.iat.Unix(), "exp": c.exp.Unix(),
	})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k.priv)
	if err != nil {
		return "", fmt.Errorf("sign with %s as %s: %w", k.kid, kid, err)
	}
	return s, nil
}

// jwksFault is how the soak test's identity provider answers JWKS fetches.
type jwksFault int

const (
	faultNone    jwksFault = iota // 200 with the published key set
	faultRefused                  // no listener: connection refused
	faultHang                     // accepts, then never answers (past the fetch timeout)
	fault503                      // 503 Service Unavailable
	faultNotJSON                  // 200 with an HTML error page
	faultEmpty                    // 200 with {"keys": []}
	numFaults
)

func (f jwksFault) String() string {
	return [...]string{"none", "refused", "hang", "503", "not-json", "empty-set"}[f]
}

// soakJWKS is the soak test's identity provider: a JWKS endpoint on
// 127.0.0.1 whose key set the test publishes, that can fail in each
// jwksFault way and recover, and that counts what it answered. The demo
// issuer is not used because it can only rotate; it cannot refuse, hang, or
// serve a broken document, and the test needs to know exactly which key set
// each successful fetch carried.
type soakJWKS struct {
	addr     string // host:port, the same across restarts
	hangCap  time.Duration
	stopHang chan struct{} // closed at cleanup: hanging handlers return

	mu        sync.Mutex
	srv       *http.Server // nil while refused
	fault     jwksFault
	version   int    // of the published set
	body      []byte // the published set
	requests  [numFaults]int
	good      int         // 200s with a usable key set served so far
	firstGood map[int]int // version -> ordinal (1-based) of the first good answer with it
}

const soakJWKSPath = "/.well-known/jwks.json"

// newSoakJWKS starts the endpoint with an empty published set (publish
// before anything fetches) and stops it in cleanup.
func newSoakJWKS(t *testing.T) *soakJWKS {
	t.Helper()
	j := &soakJWKS{hangCap: 30 * time.Second, stopHang: make(chan struct{}), firstGood: map[int]int{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	j.addr = lis.Addr().String()
	j.serve(lis)
	t.Cleanup(func() {
		close(j.stopHang)
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.srv != nil {
			j.srv.Close()
			j.srv = nil
		}
	})
	return j
}

func (j *soakJWKS) url() string { return "http://" + j.addr + soakJWKSPath }

// serve starts an http.Server on lis; j.mu is held or j is not shared yet.
func (j *soakJWKS) serve(lis net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+soakJWKSPath, j.handle)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	j.srv = srv
	go func() { _ = srv.Serve(lis) }()
}

func (j *soakJWKS) handle(w http.ResponseWriter, r *http.Request) {
	j.mu.Lock()
	fault := j.fault
	j.requests[fault]++
	body := j.body
	if fault == faultNone {
		j.good++
		if _, ok := j.firstGood[j.version]; !ok {
			j.firstGood[j.version] = j.good
		}
	}
	j.mu.Unlock()
	switch fault {
	case faultNone:
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(body)
	case faultHang:
		// Answer nothing until the fetcher gives up (its timeout closes the
		// connection), the test ends, or hangCap passes.
		select {
		case <-r.Context().Done():
		case <-j.stopHang:
		case <-time.After(j.hangCap):
		}
	case fault503:
		http.Error(w, "identity provider under maintenance", http.StatusServiceUnavailable)
	case faultNotJSON:
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html><body><h1>502 Bad Gateway</h1></body></html>\n"))
	case faultEmpty:
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write([]byte(`{"keys":[]}`))
	default:
		http.Error(w, "unexpected fault", http.StatusInternalServerError)
	}
}

// publish replaces the key set that good answers carry and returns its
// version.
func (j *soakJWKS) publish(keys ...*soakKey) (int, error) {
	set := struct {
		Keys []map[string]string `json:"keys"`
	}{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk())
	}
	body, err := json.Marshal(set)
	if err != nil {
		return 0, err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.version++
	j.body = body
	return j.version, nil
}

// setFault switches how fetches are answered. faultRefused closes the
// listener and every open connection; leaving it listens again on the same
// address.
func (j *soakJWKS) setFault(f jwksFault) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if f == faultRefused && j.srv != nil {
		if err := j.srv.Close(); err != nil {
			return fmt.Errorf("close JWKS listener: %w", err)
		}
		j.srv = nil
	}
	if f != faultRefused && j.srv == nil {
		// Another process could have taken the port meanwhile; it is very
		// unlikely on 127.0.0.1 within seconds, so a few tries suffice.
		var lis net.Listener
		var err error
		for range 50 {
			if lis, err = net.Listen("tcp", j.addr); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("listen again on %s: %w", j.addr, err)
		}
		j.serve(lis)
	}
	j.fault = f
	return nil
}

// counts returns how many requests reached the endpoint under each fault,
// and how many good answers it served.
func (j *soakJWKS) counts() (requests [numFaults]int, good int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.requests, j.good
}

// firstGoodWith returns the ordinal of the first good answer that carried
// version v, if one was served.
func (j *soakJWKS) firstGoodWith(v int) (int, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	n, ok := j.firstGood[v]
	return n, ok
}

// keyGenerator makes soak keys ahead of need in one goroutine, so that the
// schedule never waits for a key.
type keyGenerator struct {
	keys chan *soakKey
	errc chan error
}

func startKeyGenerator(ctx context.Context, prefix string) *keyGenerator {
	g := &keyGenerator{keys: make(chan *soakKey, 1), errc: make(chan error, 1)}
	go func() {
		for i := 1; ; i++ {
			k, err := newSoakKey(fmt.Sprintf("%s-%d", prefix, i))
			if err != nil {
				g.errc <- err
				return
			}
			select {
			case g.keys <- k:
			case <-ctx.Done():
				return
			}
		}
	}()
	return g
}

func (g *keyGenerator) next(ctx context.Context) (*soakKey, error) {
	select {
	case k := <-g.keys:
		return k, nil
	case err := <-g.errc:
		return nil, err
	case <-ctx.Done():
		return nil, fmt.Errorf("next key: %w", context.Cause(ctx))
	}
}
