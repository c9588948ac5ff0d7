// Package backend is the sample upstream of the demo: the guide's Flask
// app.py rewritten as a plain net/http handler, with the token check moved
// out of it and into the proxy in front of it. It owns only these routes:
//
//	GET /public       {"message": "This is a public message!"}
//	GET /protected    {"message": "This is a protected message!", "sub": <subject>}
//	GET /admin        {"message": "This is an admin message!", "sub": <subject>}
//	GET .../headers   the request headers it received, {"lower-case-name": ["v1", ...]}
//
// Any other path is a JSON 404; a method other than GET or HEAD on a known
// path is a JSON 405. The subject is read from the x-jwt-sub request header
// (configurable), which the authorization service sets from the verified
// token's sub claim; it is JSON null when the header is absent.
//
// SECURITY: the backend verifies nothing. It trusts the subject header only
// because nothing but the proxy can reach it: the proxy removes any
// client-sent copy of the header and sets the verified value. Bind the
// backend to loopback or to a private network that only the proxy can
// reach. Anyone who can connect to it directly can claim any subject by
// sending the header. The .../headers routes exist so that spoofing tests
// can see exactly what arrived after the proxy.
//
// It carries no API stability promise.
package backend
