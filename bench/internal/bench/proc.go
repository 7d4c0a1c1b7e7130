package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procSample is the CPU time (seconds) of each measured process and of the
// generator itself at one instant.
type procSample struct {
	cpu  []float64
	self float64
}

func sampleProcs(procs []Proc) procSample {
	s := procSample{cpu: make([]float64, len(procs)), self: ProcCPU(os.Getpid())}
	for i, p := range procs {
		s.cpu[i] = ProcCPU(p.Pid)
	}
	return s
}

// diffProcs returns each process's CPU between two samples and its memory
// now; server is the CPU of the processes named "server...", redis of those
// named "redis...".
func diffProcs(procs []Proc, before, after procSample) (out []ProcResult, server, redis float64) {
	for i, p := range procs {
		cpu := after.cpu[i] - before.cpu[i]
		rss, peak := ProcMem(p.Pid)
		out = append(out, ProcResult{Name: p.Name, CPU: cpu, RSSKB: rss, PeakKB: peak})
		switch {
		case strings.HasPrefix(p.Name, "server"):
			server += cpu
		case strings.HasPrefix(p.Name, "redis"):
			redis += cpu
		}
	}
	return out, server, redis
}

// ProcCPU returns the CPU time a process used so far, in seconds: the sum
// of its threads' run time from /proc/<pid>/task/*/schedstat (nanosecond
// resolution), or utime+stime from /proc/<pid>/stat (clock ticks) if that
// is not available. 0 if the process is gone.
func ProcCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	base := filepath.Join("/proc", strconv.Itoa(pid))
	if tasks, err := os.ReadDir(filepath.Join(base, "task")); err == nil && len(tasks) > 0 {
		var ns int64
		ok := true
		for _, t := range tasks {
			b, err := os.ReadFile(filepath.Join(base, "task", t.Name(), "schedstat"))
			if err != nil {
				continue // the thread just exited
			}
			f := bytes.Fields(b)
			if len(f) < 1 {
				ok = false
				break
			}
			v, err := strconv.ParseInt(string(f[0]), 10, 64)
			if err != nil {
				ok = false
				break
			}
			ns += v
		}
		if ok {
			return float64(ns) / 1e9
		}
	}
	b, err := os.ReadFile(filepath.Join(base, "stat"))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := bytes.Fields(b[i+1:])
	// Fields after the command: state(0) ... utime(11) stime(12).
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(string(f[11]), 10, 64)
	st, _ := strconv.ParseInt(string(f[12]), 10, 64)
	return float64(ut+st) / 100 // USER_HZ is 100 on Linux
}

// ProcMem returns a process's resident set and its peak (VmRSS, VmHWM) in KiB.
func ProcMem(pid int) (rss, peak int64) {
	if pid <= 0 {
		return 0, 0
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb := func() int64 {
			v, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
			return v
		}
		switch name {
		case "VmRSS":
			rss = kb()
		case "VmHWM":
			peak = kb()
		}
	}
	return rss, peak
}

// ResetPeak resets a process's VmHWM to its current RSS (clear_refs 5);
// errors are ignored (the peak is then since the process started).
func ResetPeak(pid int) {
	_ = os.WriteFile(filepath.Join("/proc", strconv.Itoa(pid), "clear_refs"), []byte("5"), 0)
}
