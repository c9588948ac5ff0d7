package grafana

import _ "embed" // for //go:embed

// Dashboard is the text of extauthz-dashboard.json.
//
//go:embed extauthz-dashboard.json
var Dashboard []byte
