// Package jsonlines is the loop the tools share: each non-empty stdin line gets one JSON line
// on stdout, in order.
package jsonlines

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
)

// Answer reads stdin line by line (each at most maxLine bytes) and writes answer(line) of every
// non-empty line as one JSON line on stdout. A failure to read or write ends the process with
// exit code 1 and the error on stderr.
func Answer(maxLine int, answer func(line []byte) any) {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<20), maxLine)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for in.Scan() {
		if len(in.Bytes()) == 0 {
			continue
		}
		if err := enc.Encode(answer(in.Bytes())); err != nil {
			fail(err)
		}
	}
	if err := in.Err(); err != nil {
		fail(err)
	}
	if err := out.Flush(); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
