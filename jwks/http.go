package jwks

// Key sets and discovery documents fetched as HTTP resources (RFC 9110,
// RFC 9111): conditional requests with the validators of the copy in force,
// the freshness a response announces, and the delay a 429 or 503 asks for.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxValidatorBytes bounds an ETag or Last-Modified value kept to send back:
// a longer one is not kept, and the next request is unconditional.
const maxValidatorBytes = 1024

// resource is a document the cache fetches, and the validators of the copy
// in force. It is owned by Run's goroutine.
type resource struct {
	url   string // as requested: user info included
	shown string // as shown: user info masked
	// etag and lastModified are the validators of the copy in force, sent
	// as If-None-Match and If-Modified-Since; empty when none or when
	// nothing from url is in force.
	etag, lastModified string
	// cacheControl is the Cache-Control of the copy in force, for a 304
	// that carries none (RFC 9111 section 4.3.4: the stored response's
	// fields stand unless the 304 updates them).
	cacheControl []string
}

// reset forgets the validators: the next request is unconditional.
func (r *resource) reset() { r.etag, r.lastModified, r.cacheControl = "", "", nil }

// keep records the validators of h, the response whose copy is now in force.
func (r *resource) keep(h http.Header) {
	r.reset()
	if v := h.Get("ETag"); len(v) <= maxValidatorBytes {
		r.etag = v
	}
	if v := h.Get("Last-Modified"); len(v) <= maxValidatorBytes {
		if _, err := http.ParseTime(v); err == nil {
			r.lastModified = v
		}
	}
	r.cacheControl = h.Values("Cache-Control")
}

// freshen records the fields a 304 updates.
func (r *resource) freshen(h http.Header) {
	if v := h.Get("ETag"); v != "" && len(v) <= maxValidatorBytes {
		r.etag = v
	}
	if cc := h.Values("Cache-Control"); len(cc) > 0 {
		r.cacheControl = cc
	}
}

// response is the answer to one GET: a 200 with its body, or a 304.
type response struct {
	notModified bool
	body        []byte
	header      http.Header
	// retryAfter is the delay a 429 or 503 asked for with Retry-After
	// (zero if none), capped by the caller.
	retryAfter time.Duration
}

// get fetches r within FetchTimeout and maxBytes, conditionally when r has
// validators (those of the copy in force). Every error wraps [ErrFetch]; a status
// other than 200 and 304 is a [*StatusError]. A 304 to an unconditional
// request is an error: there is no copy it could refer to.
func (c *Cache) get(ctx context.Context, r *resource, maxBytes int64, accept string) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.FetchTimeout)
	defer cancel()
	// The request carries the real URL, user info included (net/http sends
	// it as Basic authentication); every error below shows r.shown instead.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return response{}, fmt.Errorf("%w: %w", ErrFetch, maskURL(err, r.shown))
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "extauthz-jwks")
	sentValidator := false
	if r.etag != "" {
		req.Header.Set("If-None-Match", r.etag)
		sentValidator = true
	}
	if r.lastModified != "" {
		req.Header.Set("If-Modified-Since", r.lastModified)
		sentValidator = true
	}
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%w: %w", ErrFetch, maskURL(err, r.shown))
	}
	defer resp.Body.Close()
	out := response{header: resp.Header}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		if !sentValidator {
			return response{}, fmt.Errorf("%w: %w (to a request without validators)", ErrFetch, &StatusError{URL: r.shown, Code: resp.StatusCode})
		}
		out.notModified = true
		return out, nil
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		if d, ok := parseRetryAfter(resp.Header, c.cfg.Now()); ok {
			out.retryAfter = min(d, c.cfg.RefreshInterval)
		}
		return out, fmt.Errorf("%w: %w", ErrFetch, &StatusError{URL: r.shown, Code: resp.StatusCode})
	default:
		return response{}, fmt.Errorf("%w: %w", ErrFetch, &StatusError{URL: r.shown, Code: resp.StatusCode})
	}
	if resp.ContentLength > maxBytes {
		return response{}, fmt.Errorf("%w: %w: %d bytes announced, limit %d", ErrFetch, ErrBodyTooLarge, resp.ContentLength, maxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return response{}, fmt.Errorf("%w: read %s: %w", ErrFetch, r.shown, maskURL(err, r.shown))
	}
	if int64(len(body)) > maxBytes {
		return response{}, fmt.Errorf("%w: %w: limit %d", ErrFetch, ErrBodyTooLarge, maxBytes)
	}
	out.body = body
	return out, nil
}

// maskURL masks the user info in the URL that net/http and net/url put into
// their errors: a *url.Error reads `Get "URL": ...`, and net/http masks only
// the password there, not a user name.
func maskURL(err error, shown string) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		ue.URL = shown
	}
	return err
}

// freshness returns how long a response stays fresh by its Cache-Control
// (RFC 9111 section 4.2.1), less its Age (section 5.1), and false when
// Cache-Control names no max-age, no-cache or no-store. no-cache and
// no-store count as 0, and so does a max-age that is invalid or given twice
// (section 4.2.1: "considered stale"). s-maxage is for shared caches and is
// not read.
func freshness(cacheControl []string, h http.Header) (time.Duration, bool) {
	var (
		maxAge  int64
		seen    bool
		stale   bool
		noCache bool
	)
	for _, d := range cacheDirectives(cacheControl) {
		switch d.name {
		case "no-cache", "no-store":
			noCache = true
		case "max-age":
			n, ok := deltaSeconds(d.value)
			stale = stale || seen || !ok
			maxAge, seen = n, true
		}
	}
	switch {
	case noCache || stale:
		return 0, true
	case !seen:
		return 0, false
	}
	if age, ok := deltaSeconds(strings.TrimSpace(h.Get("Age"))); ok {
		maxAge -= age
	}
	return time.Duration(max(maxAge, 0)) * time.Second, true
}

// deltaSeconds reads a non-negative number of seconds (RFC 9111 section
// 1.2.2), a value past 2^31 standing for 2^31.
func deltaSeconds(s string) (int64, bool) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > 1<<31 {
		n = 1 << 31 // only ErrRange is possible here
	}
	return n, true
}

type directive struct{ name, value string }

// cacheDirectives splits Cache-Control field values into directives: names
// lower-cased, values unquoted (a quoted value may hold commas).
func cacheDirectives(values []string) []directive {
	var out []directive
	for _, v := range values {
		for v != "" {
			var d directive
			i := strings.IndexAny(v, ",=")
			if i < 0 {
				d.name, v = v, ""
			} else {
				d.name, v = v[:i], v[i:]
			}
			d.name = strings.ToLower(strings.TrimSpace(d.name))
			if strings.HasPrefix(v, "=") {
				v = strings.TrimLeft(v[1:], " \t")
				if strings.HasPrefix(v, `"`) {
					// quoted-string: up to the closing quote, with \-escapes.
					var b strings.Builder
					j := 1
					for ; j < len(v) && v[j] != '"'; j++ {
						if v[j] == '\\' && j+1 < len(v) {
							j++
						}
						b.WriteByte(v[j])
					}
					d.value, v = b.String(), v[min(j+1, len(v)):]
				} else if k := strings.IndexByte(v, ','); k >= 0 {
					d.value, v = strings.TrimSpace(v[:k]), v[k:]
				} else {
					d.value, v = strings.TrimSpace(v), ""
				}
				// Anything up to the next comma is garbage: skip it.
				if k := strings.IndexByte(v, ','); k >= 0 {
					v = v[k:]
				} else {
					v = ""
				}
			}
			v = strings.TrimPrefix(v, ",")
			if d.name != "" {
				out = append(out, d)
			}
		}
	}
	return out
}

// parseRetryAfter reads Retry-After (RFC 9110 section 10.2.3): delay-seconds
// or an HTTP-date. A date is taken relative to the response's Date when it
// has one, so that a skew between the two clocks does not count, else to
// now.
func parseRetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if n, ok := deltaSeconds(v); ok {
		return time.Duration(n) * time.Second, true
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if date, err := http.ParseTime(h.Get("Date")); err == nil {
		now = date
	}
	return max(at.Sub(now), 0), true
}
