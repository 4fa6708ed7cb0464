// Command promql-selectors lists the series a PromQL expression reads, parsed by Prometheus' own
// parser, so a test can check that every series an alerting rule uses is one regcred exports.
//
// Each stdin line is one expression as a JSON string. Each gets one stdout line, in order: a JSON
// array of the expression's vector selectors,
//
//	[{"metric":"up","matchers":[{"name":"job","type":"=","value":"regcred"}]}, …]
//
// (the metric name's own matcher left out), or {"error":"…"} when the expression does not parse.
package main

import (
	"encoding/json"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"regcred.dev/controlplane/gitops/internal/jsonlines"
)

type matcher struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

type selector struct {
	Metric   string    `json:"metric"`
	Matchers []matcher `json:"matchers"`
}

func selectors(p parser.Parser, expr string) (any, error) {
	parsed, err := p.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	out := []selector{}
	parser.Inspect(parsed, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		s := selector{Metric: vs.Name, Matchers: []matcher{}}
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName {
				continue
			}
			s.Matchers = append(s.Matchers, matcher{Name: m.Name, Type: m.Type.String(), Value: m.Value})
		}
		out = append(out, s)
		return nil
	})
	return out, nil
}

// answer is one line's answer: the selectors, or {"error":…}.
func answer(p parser.Parser, line []byte) any {
	var expr string
	if err := json.Unmarshal(line, &expr); err != nil {
		return map[string]string{"error": "not a JSON string: " + err.Error()}
	}
	s, err := selectors(p, expr)
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	return s
}

func main() {
	p := parser.NewParser(parser.Options{})
	jsonlines.Answer(16<<20, func(line []byte) any { return answer(p, line) })
}
