package authz

// Rendering denials: the RFC 6750 challenge and the JSON body.

import (
	"encoding/json"
	"fmt"
	"strings"
)

// deny renders a denial for r with the reason's message.
func (s *Server) deny(r Reason, scopes []string) Decision {
	return s.denyWith(r, outcomeOf(r).message, scopes)
}

// denyWith renders a denial for r with message, one of the closed set of
// messages in reason.go (it goes into a JSON body and a quoted challenge
// parameter unescaped).
func (s *Server) denyWith(r Reason, message string, scopes []string) Decision {
	o := outcomeOf(r)
	d := Decision{Reason: r, Metadata: denyMetadata[r], Detail: s.denyDetail, Message: message}
	body, _ := json.Marshal(map[string]string{"error": message})
	d.Body = string(body)
	switch {
	case o.status == 401 && o.bearer == "" && o.dpop == "":
		d.WWWAuthenticate = fmt.Sprintf(`Bearer realm="%s"`, s.realm)
		if r == MissingToken && s.requiredChallenge != "" {
			// Some provider takes only bound tokens: say DPoP is spoken
			// (RFC 9449 §7.1).
			d.WWWAuthenticate += ", " + s.requiredChallenge
		}
	case o.bearer == "insufficient_scope" && r != InsufficientScope:
		// A policy's denial: no scope would help, so none is named.
		d.WWWAuthenticate = fmt.Sprintf(`Bearer realm="%s", error="insufficient_scope"`, s.realm)
	case o.bearer == "insufficient_scope":
		d.WWWAuthenticate = fmt.Sprintf(`Bearer realm="%s", error="insufficient_scope", error_description="%s", scope="%s"`,
			s.realm, message, strings.Join(scopes, " "))
	case o.bearer != "":
		d.WWWAuthenticate = fmt.Sprintf(`Bearer realm="%s", error="%s", error_description="%s"`, s.realm, o.bearer, message)
	}
	return d
}
