// Package hl7test has helpers for tests that read HL7v2 messages: where the
// shared sample corpus is.
package hl7test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// CorpusDir returns ../shared/corpus/hl7v2 beside the module root, or the
// directory in CAREBRIDGE_CORPUS. When the corpus is absent the test is
// skipped, unless CAREBRIDGE_TEST_REQUIRE_SERVICES=1 (CI), where it fails.
func CorpusDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("CAREBRIDGE_CORPUS"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("module root (go.mod) not found above the test's directory")
		}
		dir = parent
	}
	c := filepath.Join(dir, "..", "shared", "corpus", "hl7v2")
	if _, err := os.Stat(c); err != nil {
		if os.Getenv("CAREBRIDGE_TEST_REQUIRE_SERVICES") == "1" {
			t.Fatalf("corpus %s is missing", c)
		}
		t.Skipf("corpus %s is absent; skipping", c)
	}
	return c
}

// WalkCorpus calls fn for every file of the corpus, in lexical order, with
// its top-level folder (the source of the samples), its path relative to
// the corpus and its content.
func WalkCorpus(t testing.TB, fn func(folder, rel string, data []byte)) {
	t.Helper()
	root := CorpusDir(t)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fn(strings.SplitN(rel, string(filepath.Separator), 2)[0], rel, data)
		return nil
	})
	if err != nil {
		t.Fatalf("reading the corpus: %v", err)
	}
}
