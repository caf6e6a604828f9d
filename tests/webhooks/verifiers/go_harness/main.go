// Command harness runs the Go example verifier over cases read as JSON from stdin and
// prints the reasons as a JSON array (null for an accepted request).
package main

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"time"

	"vizochok.example/verify/webhooksig"
)

type testCase struct {
	Secret     string            `json:"secret"`
	BodyBase64 string            `json:"body_base64"`
	Headers    map[string]string `json:"headers"`
	Now        float64           `json:"now"`
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
		seconds, fraction := math.Modf(current.Now)
		now := time.Unix(int64(seconds), int64(fraction*1e9))
		reason := webhooksig.Verify(current.Secret, body, header, now)
		if reason != "" {
			reasons[index] = &reason
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(reasons); err != nil {
		panic(err)
	}
}
