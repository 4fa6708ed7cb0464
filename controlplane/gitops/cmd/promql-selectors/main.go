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
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
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

func main() {
	p := parser.NewParser(parser.Options{})
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<20), 16<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for in.Scan() {
		if len(in.Bytes()) == 0 {
			continue
		}
		var expr string
		var result any
		if err := json.Unmarshal(in.Bytes(), &expr); err != nil {
			result = map[string]string{"error": "not a JSON string: " + err.Error()}
		} else if s, err := selectors(p, expr); err != nil {
			result = map[string]string{"error": err.Error()}
		} else {
			result = s
		}
		if err := enc.Encode(result); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
