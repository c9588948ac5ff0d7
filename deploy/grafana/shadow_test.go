package grafana_test

import (
	"strings"
	"testing"
)

// TestDashboardShowsShadowDenials: shadow mode's counter (result
// shadow_deny) has its own panel, by reason, so that a rollout can be
// watched before a rule is enforced.
func TestDashboardShowsShadowDenials(t *testing.T) {
	for _, p := range load(t).Panels {
		for _, tg := range p.Targets {
			if strings.Contains(tg.Expr, `result="shadow_deny"`) && strings.Contains(tg.Expr, "by (reason)") {
				return
			}
		}
	}
	t.Error("no panel shows extauthz_checks_total{result=\"shadow_deny\"} by reason")
}
