// Command kubelet-creds shows how kubelet reads an image pull Secret, using kubelet's own code
// (k8s.io/kubernetes/pkg/credentialprovider) so tests can compare regcred's reading with it.
//
// Each stdin line is {"type": "<secret type>", "data": {"<key>": "<base64>"}} (both optional, data
// values base64 as in the Kubernetes API). Each gets one stdout line, in order:
//
//	{"verdict":"error","error":"…"}    kubelet's MakeDockerKeyring fails on this Secret
//	{"verdict":"ignored"}              kubelet takes nothing from it (type, missing or empty key)
//	{"verdict":"ok","registries":{…}}  kubelet's decoded entries: username, password, email
//	{"verdict":"harness-error","error":"…"}  the line itself is not a valid input
//
// JSON cannot carry a string that is not valid UTF-8 (a username or password decoded from "auth"
// can be one); such a value is printed with U+FFFD and its exact bytes are added, in base64, as
// usernameBase64 / passwordBase64.
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/credentialprovider/secrets"
)

type input struct {
	Type v1.SecretType     `json:"type"`
	Data map[string][]byte `json:"data"` // encoding/json decodes base64, as the API server does
}

type registry struct {
	Username       string `json:"username"`
	Password       string `json:"password"`
	Email          string `json:"email"`
	UsernameBase64 string `json:"usernameBase64,omitempty"`
	PasswordBase64 string `json:"passwordBase64,omitempty"`
}

type reading struct {
	Verdict    string              `json:"verdict"`
	Error      string              `json:"error,omitempty"`
	Registries map[string]registry `json:"registries,omitzero"`
}

func read(line []byte) reading {
	var in input
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return reading{Verdict: "harness-error", Error: err.Error()}
	}
	if dec.More() {
		return reading{Verdict: "harness-error", Error: "more than one JSON value on the line"}
	}
	secret := v1.Secret{Type: in.Type, Data: in.Data}

	// With no default keyring, MakeDockerKeyring returns nil exactly when no Secret was usable.
	keyring, err := secrets.MakeDockerKeyring([]v1.Secret{secret}, nil)
	if err != nil {
		return reading{Verdict: "error", Error: err.Error()}
	}
	if keyring == nil {
		return reading{Verdict: "ignored"}
	}

	// The same decoding MakeDockerKeyring just did, kept here to print what it produced.
	var cfg credentialprovider.DockerConfig
	if secret.Type == v1.SecretTypeDockerConfigJson {
		var configJSON credentialprovider.DockerConfigJSON
		err = json.Unmarshal(secret.Data[v1.DockerConfigJsonKey], &configJSON)
		cfg = configJSON.Auths
	} else {
		err = json.Unmarshal(secret.Data[v1.DockerConfigKey], &cfg)
	}
	if err != nil {
		return reading{Verdict: "harness-error", Error: "decoding again failed: " + err.Error()}
	}
	out := reading{Verdict: "ok", Registries: map[string]registry{}}
	for key, e := range cfg {
		r := registry{Username: e.Username, Password: e.Password, Email: e.Email}
		if !utf8.ValidString(e.Username) {
			r.UsernameBase64 = base64.StdEncoding.EncodeToString([]byte(e.Username))
		}
		if !utf8.ValidString(e.Password) {
			r.PasswordBase64 = base64.StdEncoding.EncodeToString([]byte(e.Password))
		}
		out.Registries[key] = r
	}
	return out
}

func main() {
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 {
			if err := enc.Encode(read(line)); err != nil {
				fmt.Fprintln(os.Stderr, "kubelet-creds:", err)
				os.Exit(1)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "kubelet-creds:", err)
			os.Exit(1)
		}
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "kubelet-creds:", err)
		os.Exit(1)
	}
}
