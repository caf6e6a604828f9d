// Package webhooksig verifies Vizochok webhook requests (standard library only, Go 1.19+).
//
// Read the raw body before decoding it, and verify those bytes:
//
//	func checkProducts(w http.ResponseWriter, r *http.Request) {
//		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
//		if err != nil {
//			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
//			return
//		}
//		if reason := webhooksig.Verify(secret, body, r.Header, time.Now()); reason != "" {
//			w.Header().Set("Content-Type", "application/json")
//			w.WriteHeader(http.StatusUnauthorized)
//			fmt.Fprintf(w, `{"error":%q}`, reason)
//			return
//		}
//		var payload struct {
//			SKUs    []string `json:"skus"`
//			StoreID string   `json:"store_id"`
//		}
//		_ = json.Unmarshal(body, &payload)
//		...
//	}
package webhooksig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"regexp"
	"strconv"
	"time"
)

// ToleranceSeconds is how far the timestamp may be from this server's clock, either way.
const ToleranceSeconds = 300

var (
	signaturePattern = regexp.MustCompile(`^sha256=[0-9a-f]{64}$`)
	timestampPattern = regexp.MustCompile(`^[0-9]{1,12}$`)
)

// Verify returns "" for a valid request, or the reason to reject it with 401. It accepts
// the request when X-VIZOCHOK-Signature or, during a secret rotation,
// X-VIZOCHOK-Signature-Next matches the body signed with secret.
func Verify(secret string, body []byte, header http.Header, now time.Time) string {
	var candidates []string
	for _, name := range []string{"X-VIZOCHOK-Signature", "X-VIZOCHOK-Signature-Next"} {
		if value := header.Get(name); value != "" {
			candidates = append(candidates, value)
		}
	}
	timestamp := header.Get("X-VIZOCHOK-Timestamp")
	if len(candidates) == 0 {
		return "missing_signature"
	}
	if timestamp == "" {
		return "missing_timestamp"
	}
	var wellFormed []string
	for _, value := range candidates {
		if signaturePattern.MatchString(value) {
			wellFormed = append(wellFormed, value)
		}
	}
	if len(wellFormed) == 0 {
		return "malformed_signature"
	}
	if !timestampPattern.MatchString(timestamp) {
		return "malformed_timestamp"
	}
	signedAt, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return "malformed_timestamp"
	}
	// now.Unix() would drop the fraction of a second and accept a request 300.9 s old.
	// Sub saturates instead of overflowing for a timestamp centuries away.
	skew := now.Sub(time.Unix(signedAt, 0))
	if skew > ToleranceSeconds*time.Second || skew < -ToleranceSeconds*time.Second {
		return "stale_timestamp"
	}

	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp + "."))
	mac.Write(body)
	expected := []byte("sha256=" + hex.EncodeToString(mac.Sum(nil)))
	// Every candidate is compared, so the time taken does not reveal which one matched.
	matched := false
	for _, value := range wellFormed {
		if hmac.Equal(expected, []byte(value)) {
			matched = true
		}
	}
	if !matched {
		return "invalid_signature"
	}
	return ""
}
