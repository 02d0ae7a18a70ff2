package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// ClockTicksPerSecond is the unit of utime and stime in /proc/PID/stat
// (USER_HZ, 100 on every Linux architecture that Meridian runs on).
const ClockTicksPerSecond = 100

// Proc reads process statistics from a proc file system.
type Proc struct {
	// Dir is where proc is mounted. Default "/proc".
	Dir string
}

func (p Proc) dir() string {
	if p.Dir == "" {
		return "/proc"
	}
	return p.Dir
}

// procStat holds the fields of /proc/PID/stat that the benchmark uses.
type procStat struct {
	ppid         int
	utime, stime int64
}

// parseStat parses the contents of /proc/PID/stat. The command name (field
// 2) is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("stat: no ')' after the command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("stat: %d fields after the command name, want at least 13", len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseInt(f[11], 10, 64)
	st, err3 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("stat: %w", err)
	}
	if ppid < 0 || ut < 0 || st < 0 {
		return procStat{}, errors.New("stat: negative field")
	}
	return procStat{ppid: ppid, utime: ut, stime: st}, nil
}

func (p Proc) stat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join(p.dir(), strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	s, err := parseStat(b)
	if err != nil {
		return procStat{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	return s, nil
}

// Tree returns roots and all their living descendants, sorted. A root that
// does not exist is an error: the server it stands for has died.
func (p Proc) Tree(roots []int) ([]int, error) {
	ents, err := os.ReadDir(p.dir())
	if err != nil {
		return nil, fmt.Errorf("proc: %w", err)
	}
	children := map[int][]int{}
	alive := map[int]bool{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		s, err := p.stat(pid)
		if err != nil {
			continue // exited while we looked
		}
		alive[pid] = true
		children[s.ppid] = append(children[s.ppid], pid)
	}
	var out []int
	seen := map[int]bool{}
	queue := slices.Clone(roots)
	for _, r := range roots {
		if !alive[r] {
			return nil, fmt.Errorf("proc: process %d is not running", r)
		}
	}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	slices.Sort(out)
	return out, nil
}

// CPUTicks returns utime+stime of each pid (all its threads) in clock
// ticks; pids that have exited are left out.
func (p Proc) CPUTicks(pids []int) map[int]int64 {
	m := make(map[int]int64, len(pids))
	for _, pid := range pids {
		if s, err := p.stat(pid); err == nil {
			m[pid] = s.utime + s.stime
		}
	}
	return m
}

// CPUDelta is the CPU time, in clock ticks, that the processes alive at
// the end spent between two CPUTicks readings. A process that started in
// between counts whole; one that exited in between is lost.
func CPUDelta(before, after map[int]int64) int64 {
	var d int64
	for pid, t := range after {
		d += t - before[pid]
	}
	return d
}

// PSS returns the summed proportional set size of pids in bytes, from
// /proc/PID/smaps_rollup: pages shared by several of them (nginx's shared
// cache zone) count once in total.
func (p Proc) PSS(pids []int) (int64, error) {
	var total int64
	for _, pid := range pids {
		kb, err := p.rollup(pid, "Pss:")
		if err != nil {
			return 0, err
		}
		total += kb << 10
	}
	return total, nil
}

func (p Proc) rollup(pid int, field string) (int64, error) {
	f, err := os.Open(filepath.Join(p.dir(), strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return 0, fmt.Errorf("proc: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, field) {
			continue
		}
		v := strings.Fields(strings.TrimPrefix(line, field))
		if len(v) != 2 || v[1] != "kB" {
			return 0, fmt.Errorf("proc: pid %d: bad line %q", pid, line)
		}
		n, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc: pid %d: %w", pid, err)
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("proc: pid %d: %w", pid, err)
	}
	return 0, fmt.Errorf("proc: pid %d: no %s in smaps_rollup", pid, field)
}

// DirBytes returns the space allocated to the files under dir (their
// blocks, as tmpfs charges memory), or 0 for "" .
func DirBytes(dir string) (int64, error) {
	if dir == "" {
		return 0, nil
	}
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a temporary file renamed while we walk
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cache dir: %w", err)
	}
	return total, nil
}
