//go:build linux

package main

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseWatched(t *testing.T) {
	for _, c := range []struct {
		in   string
		want watched
	}{
		{"carebridge=42", watched{name: "carebridge", pid: 42}},
		{"postgres=7+", watched{name: "postgres", pid: 7, children: true}},
	} {
		got, err := parseWatched(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseWatched(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "42", "=42", "x=", "x=-1", "x=abc", "x=4 2"} {
		if _, err := parseWatched(bad); err == nil {
			t.Errorf("parseWatched(%q) took it", bad)
		}
	}
}

// A process's CPU grows as it works, its parent is read right, and with
// children counted, a busy child's time shows in its parent's.
func TestProcessCPUCountsChildren(t *testing.T) {
	_, _, ppid, err := statTimes(os.Getpid())
	if err != nil || ppid != os.Getppid() {
		t.Fatalf("statTimes(self): ppid %d, %v; want %d", ppid, err, os.Getppid())
	}
	child := exec.Command("sh", "-c", "while :; do :; done")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	self := watched{name: "test", pid: os.Getpid()}
	family := watched{name: "test", pid: os.Getpid(), children: true}
	alone0, _ := processCPU(self)
	with0, err := processCPU(family)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	alone1, _ := processCPU(self)
	with1, _ := processCPU(family)
	childCPU, err := processCPU(watched{pid: child.Process.Pid})
	if err != nil {
		t.Fatal(err)
	}
	if childCPU < 50*time.Millisecond {
		t.Fatalf("the busy child %d used %v of CPU in 300 ms", child.Process.Pid, childCPU)
	}
	if grew, own := with1-with0, alone1-alone0; grew < own+childCPU/2 {
		t.Errorf("with children the CPU grew %v, alone %v, the child used %v", grew, own, childCPU)
	}
}

func TestMachineCPU(t *testing.T) {
	busy, _, ok := machineCPU()
	if !ok || busy <= 0 {
		t.Fatalf("machineCPU() = %v, %v", busy, ok)
	}
}
