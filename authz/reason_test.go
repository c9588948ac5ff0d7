package authz

import (
	"encoding/json"
	"testing"
)

// TestMessagesAreSafe: every deny message can stand as it is in a JSON
// string and in a header value (X-Extauthz-Error, which nginx puts into its
// JSON body unescaped) and in a quoted challenge parameter.
func TestMessagesAreSafe(t *testing.T) {
	messages := []string{msgNoOriginalURI, msgNoPath, msgNoMethod, msgNoHost}
	for _, r := range Reasons() {
		messages = append(messages, r.Message())
	}
	for _, m := range messages {
		b, _ := json.Marshal(m)
		if string(b) != `"`+m+`"` {
			t.Errorf("%q needs escaping in JSON", m)
		}
		for i := 0; i < len(m); i++ {
			if c := m[i]; c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
				t.Errorf("%q holds %q", m, c)
			}
		}
	}
}
