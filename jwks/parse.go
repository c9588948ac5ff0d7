package jwks

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/MicahParks/jwkset"
	"github.com/go-json-experiment/json/jsontext"
)

// MinRSABits is the smallest RSA modulus accepted for a signing key. Smaller
// keys are factorable by a determined attacker and are skipped.
const MinRSABits = 2048

// ParseResult is a parsed key set: the usable keys, and a short reason for
// each key that was skipped.
type ParseResult struct {
	Keys    []jwkset.JWK
	Skipped []string
}

// Parse decodes a JWK Set document and keeps the keys that can verify a token
// signed with one of algs: RSA keys of at least [MinRSABits] for RS* and PS*,
// EC keys on the matching curve for ES*, Ed25519 keys for EdDSA.
//
// A key is skipped, with its reason in [ParseResult.Skipped], when its "use"
// is present and not "sig"; when its "key_ops" is present and does not list
// "verify" (so a key with both must have them agree; a null key_ops counts as
// absent); when its "alg" is not in algs; when its kid repeats an earlier
// key's (keys without a kid are all kept: a token without a kid is tried
// against each); and when parsers could disagree on what it says: it repeats
// a member name at any depth (RFC 7517 lets a parser keep either the last or
// refuse), it has a member whose name encoding/json, and so jwkset, would take
// for a JWK member's in another case ("USE", "Kid"), or it holds invalid
// UTF-8. Private key material is ignored.
//
// Parse returns an error wrapping [ErrParse] when the document is not a JWK
// Set, holds more than maxKeys keys, or has top-level member names that repeat
// or that fold onto "keys" ("keys" twice, "keys" and "Keys"): which key set
// such a document holds depends on the parser that reads it, so it must not
// replace a good one. It returns an error wrapping [ErrNoUsableKeys] when no
// key is usable. A maxKeys of zero or less means no limit.
func Parse(doc []byte, algs []string, maxKeys int) (ParseResult, error) {
	raws, err := setKeys(doc, maxKeys)
	if err != nil {
		return ParseResult{}, fmt.Errorf("%w: %s", ErrParse, truncate(err.Error()))
	}
	var res ParseResult
	seen := make(map[string]bool, len(raws))
	for i, raw := range raws {
		jwk, err := parseKey(raw, algs)
		if err != nil {
			res.Skipped = append(res.Skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		kid := jwk.Marshal().KID
		if kid != "" && seen[kid] {
			res.Skipped = append(res.Skipped, fmt.Sprintf("key %d: duplicate kid", i))
			continue
		}
		seen[kid] = true
		res.Keys = append(res.Keys, jwk)
	}
	if len(res.Keys) == 0 {
		return res, fmt.Errorf("%w (%d skipped)", ErrNoUsableKeys, len(res.Skipped))
	}
	return res, nil
}

// setKeys returns the elements of doc's "keys" array, undecoded. The
// elements may repeat member names or hold invalid UTF-8, so that parseKey
// can skip just the key that does; the set object's own names are checked
// here.
func setKeys(doc []byte, maxKeys int) ([]jsontext.Value, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(doc), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	var keys []jsontext.Value
	err := members(dec, []string{"keys"}, func(name string) error {
		if name != "keys" {
			return dec.SkipValue()
		}
		var err error
		keys, err = keysArray(dec, maxKeys)
		return err
	})
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	if keys == nil {
		return nil, errors.New(`no "keys" array`)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, errors.New("data after the JWK Set object")
	}
	return keys, nil
}

// keysArray reads the value of "keys": nil for null, else its elements.
func keysArray(dec *jsontext.Decoder, maxKeys int) ([]jsontext.Value, error) {
	tok, err := dec.ReadToken()
	switch {
	case err != nil:
		return nil, err
	case tok.Kind() == 'n':
		return nil, nil
	case tok.Kind() != '[':
		return nil, errors.New(`"keys" is not an array`)
	}
	keys := []jsontext.Value{}
	for dec.PeekKind() != ']' {
		v, err := dec.ReadValue()
		if err != nil {
			return nil, err
		}
		if maxKeys > 0 && len(keys) == maxKeys {
			return nil, fmt.Errorf("more keys than the limit of %d", maxKeys)
		}
		keys = append(keys, slices.Clone(v))
	}
	_, err = dec.ReadToken()
	return keys, err
}

// members reads the JSON object at dec and calls value with each member's
// name, dec then being at the member's value, which value must read or skip.
// It refuses a name that is not valid UTF-8, that repeats an earlier name, or
// that is not one of known but equals one of them case-insensitively, as
// encoding/json matches member names to struct fields (strings.EqualFold,
// "\u212aty" included): the two names would be one member to encoding/json and
// two to a parser that follows RFC 8259, and which of them wins differs
// between parsers.
func members(dec *jsontext.Decoder, known []string, value func(name string) error) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '{' {
		return errNotObject
	}
	seen := map[string]bool{}
	for dec.PeekKind() != '}' {
		quoted, err := dec.ReadValue() // the name as written
		if err != nil {
			return err
		}
		if !quoted.IsValid() {
			return errors.New("invalid UTF-8 in a member name")
		}
		b, err := jsontext.AppendUnquote(nil, quoted)
		if err != nil {
			return err
		}
		name := string(b)
		if seen[name] {
			return errDuplicateNames
		}
		seen[name] = true
		for _, k := range known {
			if name != k && strings.EqualFold(name, k) {
				return fmt.Errorf("member %+q reads as %q to case-insensitive parsers", truncate(name), k)
			}
		}
		if err := value(name); err != nil {
			return err
		}
	}
	_, err = dec.ReadToken()
	return err
}

var (
	errNotObject      = errors.New("not a JSON object")
	errNotJWK         = errors.New("not a JSON object of JWK members")
	errDuplicateNames = errors.New("duplicate member names")
)

// jwkMembers are the member names jwkset.JWKMarshal decodes: the names of its
// json tags.
var jwkMembers = sync.OnceValue(func() []string {
	var names []string
	for f := range reflect.TypeFor[jwkset.JWKMarshal]().Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
})

func parseKey(raw jsontext.Value, algs []string) (jwkset.JWK, error) {
	if raw.Kind() != '{' {
		return jwkset.JWK{}, errNotJWK
	}
	// A key that parsers read differently is skipped before anything
	// decodes it: encoding/json keeps the last of duplicate names and
	// replaces invalid UTF-8, others keep the first or refuse the key.
	if !raw.IsValid() {
		if raw.IsValid(jsontext.AllowDuplicateNames(true)) {
			return jwkset.JWK{}, errDuplicateNames
		}
		return jwkset.JWK{}, errors.New("invalid UTF-8")
	}
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	if err := members(dec, jwkMembers(), func(string) error { return dec.SkipValue() }); err != nil {
		return jwkset.JWK{}, err
	}
	var m jwkset.JWKMarshal
	if err := json.Unmarshal(raw, &m); err != nil {
		return jwkset.JWK{}, errNotJWK
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return jwkset.JWK{}, fmt.Errorf("use %q is not sig", truncate(string(m.USE)))
	}
	// RFC 7517 section 4.3: key_ops lists what the key may be used for. An
	// empty list allows nothing; null (encoding/json leaves the slice nil)
	// counts as absent, as a null use does.
	if m.KEYOPS != nil && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		ops := make([]string, len(m.KEYOPS))
		for i, o := range m.KEYOPS {
			ops[i] = string(o)
		}
		return jwkset.JWK{}, fmt.Errorf("key_ops %q does not allow verify", truncate(strings.Join(ops, ",")))
	}
	if m.ALG != "" && !slices.Contains(algs, string(m.ALG)) {
		return jwkset.JWK{}, fmt.Errorf("alg %q is not allowed", truncate(string(m.ALG)))
	}
	// Private members are dropped before parsing: a JWKS endpoint that leaks a
	// private key must not make us hold it.
	m.D, m.P, m.Q, m.DP, m.DQ, m.QI, m.OTH, m.K = "", "", "", "", "", "", nil, ""
	// x5u is never fetched: jwkset only fetches it when GetX5U is set, and it
	// is not. x5c chains are not needed to verify a signature.
	jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		return jwkset.JWK{}, fmt.Errorf("invalid %s key", truncate(string(m.KTY)))
	}
	if !usable(jwk.Key(), m.ALG, algs) {
		return jwkset.JWK{}, fmt.Errorf("%s key fits no allowed algorithm %v", truncate(string(m.KTY)), algs)
	}
	return jwk, nil
}

// usable reports whether key can verify a signature with one of algs (or, when
// the JWK names an alg, with that one).
func usable(key any, alg jwkset.ALG, algs []string) bool {
	if alg != "" {
		algs = []string{string(alg)}
	}
	for _, a := range algs {
		if fits(key, a) {
			return true
		}
	}
	return false
}

func fits(key any, alg string) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return k.N.BitLen() >= MinRSABits && rsaVerifiable(k)
		}
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// rsaVerifiable reports whether crypto/rsa accepts k for verification (the
// checks of its checkPublicKey): an odd modulus and an odd exponent from 3 to
// 2^31-1. A key that fails them can never verify a signature, so a set of
// only such keys must not replace a working one.
func rsaVerifiable(k *rsa.PublicKey) bool {
	return k.N.Bit(0) == 1 && k.E >= 3 && k.E%2 == 1 && k.E <= 1<<31-1
}

// truncate bounds a string taken from a remote document before it reaches an
// error message or a log line.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
