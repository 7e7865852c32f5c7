package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The CPU a load costs, per request and per process, read from Linux's
// /proc: what makes a figure from one machine mean something on
// another. A closed loop on a small machine shares its cores between
// the server, its database and the load generator; the CPU each takes
// per request says what the server and database would do with the
// cores to themselves.

// clockTicks is Linux's USER_HZ, the unit of /proc's CPU times: 100 on
// every architecture Go supports (sysconf would need cgo).
const clockTicks = 100

// watched is a process whose CPU the load reports: its own time and its
// threads'; with children, also its children's (a PostgreSQL
// postmaster's backends), those still running and those it has reaped.
type watched struct {
	name     string
	pid      int
	children bool
}

// parseWatched reads --cpu's name=PID or name=PID+ (with its children).
func parseWatched(v string) (watched, error) {
	name, pid, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return watched{}, fmt.Errorf("--cpu %q: want name=PID, or name=PID+ to count its children too", v)
	}
	w := watched{name: name}
	pid, w.children = strings.CutSuffix(pid, "+")
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 0 {
		return watched{}, fmt.Errorf("--cpu %q: %q is not a process id", v, pid)
	}
	w.pid = n
	return w, nil
}

// cpuFlags collects repeated --cpu flags.
type cpuFlags []watched

func (f *cpuFlags) String() string { return fmt.Sprint(*f) }

func (f *cpuFlags) Set(v string) error {
	w, err := parseWatched(v)
	if err != nil {
		return err
	}
	*f = append(*f, w)
	return nil
}

// cpuSample is the CPU time used so far: by each watched process, by
// this one (the load generator), and by the whole machine (busy, and
// stolen by the hypervisor).
type cpuSample struct {
	at      time.Time
	procs   []time.Duration // as watched; -1 when unreadable
	self    time.Duration
	busy    time.Duration
	stolen  time.Duration
	machine bool // busy and stolen were read
}

func sampleCPU(ws []watched) cpuSample {
	s := cpuSample{at: time.Now(), procs: make([]time.Duration, len(ws))}
	for i, w := range ws {
		d, err := processCPU(w)
		if err != nil {
			d = -1
		}
		s.procs[i] = d
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s.busy, s.stolen, s.machine = machineCPU()
	return s
}

// ticks turns /proc clock ticks into a duration.
func ticks(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }

// statTimes reads utime, stime, cutime and cstime from /proc/PID/stat.
func statTimes(pid int) (self, reaped int64, ppid int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted from after its closing one (field 3, state, comes first).
	end := strings.LastIndexByte(string(b), ')')
	if end < 0 {
		return 0, 0, 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 15 {
		return 0, 0, 0, errors.New("short stat")
	}
	num := func(i int) int64 { n, _ := strconv.ParseInt(f[i], 10, 64); return n }
	// f[0] is field 3; ppid is field 4, utime..cstime fields 14..17.
	return num(11) + num(12), num(13) + num(14), int(num(1)), nil
}

func processCPU(w watched) (time.Duration, error) {
	self, reaped, _, err := statTimes(w.pid)
	if err != nil {
		return 0, err
	}
	total := self
	if !w.children {
		return ticks(total), nil
	}
	total += reaped
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == w.pid {
			continue
		}
		if s, _, ppid, err := statTimes(pid); err == nil && ppid == w.pid {
			total += s
		}
	}
	return ticks(total), nil
}

// machineCPU reads /proc/stat's first line: user, nice, system, irq and
// softirq are busy; steal is time the hypervisor gave elsewhere.
func machineCPU() (busy, stolen time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, false
	}
	var v [8]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	return ticks(v[0] + v[1] + v[2] + v[5] + v[6]), ticks(v[7]), true
}

// reportCPU prints the CPU each process took per request between a and
// b, and the rate this machine's cores would allow for everything but
// the load generator (the server, its database when it runs here, the
// rest of the system): what they could do with the load generator on
// another machine, if the cost per request stayed as it was.
func reportCPU(ws []watched, a, b cpuSample, requests int64) {
	if requests == 0 {
		return
	}
	perReq := func(d time.Duration) string {
		return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)/float64(requests))
	}
	var parts []string
	for i, w := range ws {
		if a.procs[i] < 0 || b.procs[i] < 0 {
			parts = append(parts, w.name+" unreadable")
			continue
		}
		parts = append(parts, w.name+" "+perReq(b.procs[i]-a.procs[i]))
	}
	self := b.self - a.self
	parts = append(parts, "load generator "+perReq(self))
	fmt.Printf("        cpu per request: %s\n", strings.Join(parts, ", "))
	wall := b.at.Sub(a.at)
	if !a.machine || !b.machine || wall <= 0 {
		return
	}
	busy := b.busy - a.busy
	fmt.Printf("        machine: %.2f of %d cores busy, %.2f stolen by the hypervisor\n",
		float64(busy)/float64(wall), runtime.NumCPU(), float64(b.stolen-a.stolen)/float64(wall))
	if rest := busy - self; rest > 0 {
		fmt.Printf("        cpu ceiling without the load generator: %.0f req/s on %d cores (%s of the rest of the machine per request)\n",
			float64(requests)*float64(runtime.NumCPU())/rest.Seconds(), runtime.NumCPU(), perReq(rest))
	}
}
