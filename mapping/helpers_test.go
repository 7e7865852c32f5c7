package mapping_test

import (
	"errors"
	"os"
	"testing"
	"time"
)

// testNow is a fixed routing time: Tuesday 3 November 2026, 14:30 UTC.
var testNow = time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
