package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs one carebridge command in-process.
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &environment{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	err = run(context.Background(), env, args)
	return out.String(), errb.String(), err
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			args := []string{c.name, "--help"}
			// Commands with subcommands: the flags live in a subcommand's help.
			switch c.name {
			case "inbound":
				args = []string{"inbound", "list", "--help"}
			case "audit":
				args = []string{"audit", "verify", "--help"}
			case "subscriptions", "clients", "users":
				args = []string{c.name, "add", "--help"}
			}
			out, _, err := runCLI(t, "", args...)
			if err != nil {
				t.Fatalf("--help returned %v", err)
			}
			if n := strings.Count(out, "Usage: carebridge"); n != 1 {
				t.Errorf("the help is printed %d times", n)
			}
			for _, want := range []string{"Usage: carebridge " + c.name, "Example:"} {
				if !strings.Contains(out, want) {
					t.Errorf("help lacks %q:\n%s", want, out)
				}
			}
		})
	}
	out, _, err := runCLI(t, "", "help")
	if err != nil || !strings.Contains(out, "serve") || !strings.Contains(out, "send") {
		t.Errorf("carebridge help = %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, "", "frobnicate"); !errors.Is(err, errUsage) {
		t.Errorf("unknown command: err = %v, want a usage error", err)
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	var out, errb bytes.Buffer
	env := &environment{stdout: &out, stderr: &errb, getenv: func(k string) string {
		if k == "CAREBRIDGE_DATABASE_URL" {
			return "mysql://nope"
		}
		return ""
	}}
	err := run(context.Background(), env, []string{"migrate"})
	if !errors.Is(err, errUsage) || !strings.Contains(errb.String(), "postgres://") {
		t.Fatalf("migrate with CAREBRIDGE_DATABASE_URL=mysql://… = %v, %q; want a usage error naming postgres://", err, errb.String())
	}
}

const sendSample = "MSH|^~\\&|CLISYS|CLIHOSP|CAREBRIDGE|CB|20261124093000||ADT^A01^ADT_A01|CLI0001|P|2.5.1\rEVN|A01|20261124093000\rPID|1||MRN1^^^CLIHOSP^MR||ZZCLIPATIENT^ANN||19800101|F\rPV1|1|I|4W^401^1\r" +
	"MSH|^~\\&|CLISYS|CLIHOSP|CAREBRIDGE|CB|20261124093100||ADT^A08^ADT_A01|CLI0002|P|2.5.1\rEVN|A08|20261124093100\rPID|1||MRN1^^^CLIHOSP^MR||ZZCLIPATIENT^ANN||19800101|F\r"

// TestSendListShow is the README tour in miniature: send a file of two
// messages and a broken one, then list and show them while serve runs.
func TestSendListShow(t *testing.T) {
	dataDir := t.TempDir()
	mllpAddr, _, _ := inProcessServer(t, dataDir)
	in := t.TempDir()
	if err := os.WriteFile(filepath.Join(in, "two.hl7"), []byte(sendSample), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in, "README.txt"), []byte("not a message"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "", "send", "--addr", mllpAddr, in)
	if err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	for _, want := range []string{"two.hl7#1\tCLI0001\tAA", "two.hl7#2\tCLI0002\tAA", "sent 2 messages from 1 files", "2 accepted, 0 not accepted, 0 without ACK", "1 files skipped"} {
		if !strings.Contains(out, want) {
			t.Errorf("send output lacks %q:\n%s", want, out)
		}
	}

	// A broken message from standard input: AR, exit status 1.
	out, _, err = runCLI(t, "MSH|^~\\&|CLISYS|CLIHOSP|CAREBRIDGE|CB|20261124||ADT^A01||P|2.5.1\r", "send", "--addr", mllpAddr, "-")
	if !errors.Is(err, errFailed) {
		t.Fatalf("send of a broken message: err = %v, want failure\n%s", err, out)
	}
	if !strings.Contains(out, "\tAR\t") || !strings.Contains(out, "MSH^1^10") {
		t.Errorf("send output does not name the AR and the missing MSH-10:\n%s", out)
	}

	out, _, err = runCLI(t, "", "inbound", "list", "--data-dir", dataDir, "--json")
	if err != nil {
		t.Fatalf("inbound list: %v", err)
	}
	var rows []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var row map[string]any
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("inbound list --json line %q: %v", line, err)
		}
		rows = append(rows, row)
	}
	if len(rows) != 3 {
		t.Fatalf("inbound list shows %d messages, want 3:\n%s", len(rows), out)
	}
	for _, k := range []string{"id", "control_id", "sending_application", "sending_facility", "message_type", "state", "received_at"} {
		if _, ok := rows[0][k]; !ok {
			t.Errorf("inbound list --json lacks %q: %v", k, rows[0])
		}
	}
	if rows[0]["control_id"] != "CLI0001" || rows[0]["message_type"] != "ADT^A01" || rows[0]["state"] != "accepted" || rows[0]["sending_facility"] != "CLIHOSP" {
		t.Errorf("first row = %v", rows[0])
	}
	if rows[2]["state"] != "rejected" {
		t.Errorf("broken message state = %v, want rejected", rows[2]["state"])
	}
	if strings.Contains(out, "ZZCLIPATIENT") {
		t.Fatal("inbound list shows message content")
	}

	id := rows[0]["id"].(string)
	out, _, err = runCLI(t, "", "inbound", "show", "--data-dir", dataDir, id)
	if err != nil || !strings.Contains(out, "CLI0001") || strings.Contains(out, "ZZCLIPATIENT") {
		t.Fatalf("inbound show without --reveal: %v\n%s", err, out)
	}
	out, errOut, err := runCLI(t, "", "inbound", "show", "--data-dir", dataDir, "--reveal", id)
	if err != nil || !strings.Contains(out, "PID|1||MRN1^^^CLIHOSP^MR||ZZCLIPATIENT^ANN") {
		t.Fatalf("inbound show --reveal: %v\n%s", err, out)
	}
	if !strings.Contains(errOut, "PHI") {
		t.Errorf("--reveal gives no PHI warning on stderr: %q", errOut)
	}
	if _, _, err := runCLI(t, "", "inbound", "show", "--data-dir", dataDir, "no-such-id"); err == nil {
		t.Error("inbound show of an unknown id succeeded")
	}
}
