// Command kstatus reads Kubernetes objects as kstatus does: sigs.k8s.io/cli-utils'
// pkg/kstatus/status.Compute, the status library behind Flux's health checks (`wait` and
// `healthChecks` of a Kustomization), so tests can show what Flux concludes from a live object.
//
// Each stdin line is one object as the API server returns it (JSON). Each gets one stdout line,
// in order:
//
//	{"status":"InProgress","message":"…"}  Compute's verdict: InProgress, Failed, Current,
//	                                       Terminating, NotFound or Unknown
//	{"error":"…"}                          Compute failed, or the line is not an object
package main

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"regcred.dev/controlplane/gitops/internal/jsonlines"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

func compute(line []byte) verdict {
	// Decoded as Kubernetes clients decode objects: integers become int64, which kstatus expects.
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON(line); err != nil {
		return verdict{Error: err.Error()}
	}
	result, err := status.Compute(&u)
	if err != nil {
		return verdict{Error: err.Error()}
	}
	return verdict{Status: string(result.Status), Message: result.Message}
}

func main() {
	jsonlines.Answer(64<<20, func(line []byte) any { return compute(line) })
}
