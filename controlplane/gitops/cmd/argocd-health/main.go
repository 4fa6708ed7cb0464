// Command argocd-health runs an Argo CD resource health script (the Lua of
// `resource.customizations.health.<group>_<kind>` in argocd-cm) the way Argo CD's application
// controller runs a custom health check, so tests can show what Argo CD displays for a live
// object. What it reproduces, from Argo CD's util/lua and gitops-engine's pkg/health:
//
//   - gopher-lua with the standard libraries skipped, then only package, base and table opened:
//     the restricted set Argo CD gives a health check from argocd-cm unless
//     `useOpenLibs` is set (no string, math, io, os or debug library). Argo CD also lets a script
//     `require("os")` for os.time and os.date; they are left out here, so a script that came to
//     use them would fail here first;
//   - the object as the global `obj`, with integers and floats as Lua numbers, and a 1 s limit;
//   - the script's returned table encoded to JSON with layeh.com/gopher-json (as Argo CD does)
//     and read as {status, message}: a status outside Healthy, Progressing, Degraded, Suspended,
//     Missing and Unknown becomes Unknown, an empty table or no return value an empty health, and
//     a script error is shown as Unknown with the error;
//   - before any script, an object with a deletionTimestamp is Progressing, "Pending deletion".
//
// The script is the file named by the only argument. Each stdin line is one object as the API
// server returns it (JSON); each gets one stdout line, in order:
//
//	{"health":{"status":…,"message":…},"script":{"status":…,"message":…}}
//
// `health` is what Argo CD shows; `script` is the script's own answer (also for an object being
// deleted), and `error` replaces it when the script fails.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	luajson "layeh.com/gopher-json"
	"regcred.dev/controlplane/gitops/internal/jsonlines"
)

type health struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

type answer struct {
	Health health  `json:"health"`
	Script *health `json:"script,omitempty"`
	Error  string  `json:"error,omitempty"`
}

var validStatus = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

// restrictedState is a Lua state with exactly the libraries Argo CD opens for a custom check.
func restrictedState() *lua.LState {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			panic(err)
		}
	}
	return l
}

// toLua converts a decoded JSON value (as unstructured holds it) into a Lua value.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetString(key, toLua(l, item))
		}
		return t
	}
	return lua.LNil
}

func runScript(script string, obj map[string]any) (health, error) {
	l := restrictedState()
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	fn, err := l.LoadString(script)
	if err != nil {
		return health{}, err
	}
	l.Push(fn)
	if err := l.PCall(0, lua.MultRet, nil); err != nil {
		return health{}, err
	}
	returned := l.Get(-1)
	switch returned.Type() {
	case lua.LTNil:
		return health{}, nil
	case lua.LTTable:
	default:
		return health{}, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return health{}, err
	}
	var h health
	if err := json.Unmarshal(encoded, &h); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Value == "array" {
			return health{}, nil // an empty table encodes as []
		}
		return health{}, err
	}
	if !validStatus[h.Status] {
		return health{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return h, nil
}

func assess(script string, line []byte) answer {
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON(line); err != nil {
		return answer{Health: health{Status: "Unknown"}, Error: "not an object: " + err.Error()}
	}
	own, err := runScript(script, u.Object)
	var a answer
	if err != nil {
		a = answer{Health: health{Status: "Unknown", Message: err.Error()}, Error: err.Error()}
	} else {
		a = answer{Health: own, Script: &own}
	}
	if u.GetDeletionTimestamp() != nil {
		a.Health = health{Status: "Progressing", Message: "Pending deletion"}
	}
	return a
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health <health.lua> < objects.jsonl")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	jsonlines.Answer(64<<20, func(line []byte) any { return assess(string(script), line) })
}
