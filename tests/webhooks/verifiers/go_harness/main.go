// Command harness runs the Go example verifier over cases read as JSON from stdin and
// prints the reasons as a JSON array (null for an accepted request).
package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"time"

	"vizochok.example/verify/webhooksig"
)

type testCase struct {
	Secret     string            `json:"secret"`
	BodyBase64 string            `json:"body_base64"`
	Headers    map[string]string `json:"headers"`
	Now        int64             `json:"now"`
}

func main() {
	var cases []testCase
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	reasons := make([]*string, len(cases))
	for index, current := range cases {
		body, err := base64.StdEncoding.DecodeString(current.BodyBase64)
		if err != nil {
			panic(err)
		}
		header := http.Header{}
		for name, value := range current.Headers {
			header.Set(name, value)
		}
		reason := webhooksig.Verify(current.Secret, body, header, time.Unix(current.Now, 0))
		if reason != "" {
			reasons[index] = &reason
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(reasons); err != nil {
		panic(err)
	}
}
