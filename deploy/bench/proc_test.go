package bench

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       procStat
	}{
		{"plain", "42 (nginx) S 7 42 42 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 1 0 100 1000 200 18446744073709551615",
			procStat{ppid: 7, utime: 150, stime: 25}},
		{"spaces and parens in the name", "99 (a (b) c) R 1 99 99 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0",
			procStat{ppid: 1, utime: 3, stime: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.stat))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("parseStat = %+v, want %+v", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "1 nginx S 1", "1 (x) S 1 2 3", "1 (x) S a 1 1 0 -1 0 0 0 0 0 1 1", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 -1 1"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

// fakeProc writes a proc directory with the given pid -> (ppid, ticks).
func fakeProc(t *testing.T, procs map[int][2]int) Proc {
	dir := t.TempDir()
	for pid, p := range procs {
		d := filepath.Join(dir, strconv.Itoa(pid))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := strconv.Itoa(pid) + " (p) S " + strconv.Itoa(p[0]) + " 0 0 0 -1 0 0 0 0 0 " + strconv.Itoa(p[1]) + " 1 0 0 20 0 1 0"
		if err := os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		rollup := "00400000-7ffd [rollup]\nRss:   900 kB\nPss:   " + strconv.Itoa(p[1]) + " kB\n"
		if err := os.WriteFile(filepath.Join(d, "smaps_rollup"), []byte(rollup), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "self"), 0o755) // not a pid: skipped
	return Proc{Dir: dir}
}

func TestProcTree(t *testing.T) {
	// 10 is nginx's master with workers 11 and 12; 12 forked 13; 20 is unrelated.
	p := fakeProc(t, map[int][2]int{1: {0, 0}, 10: {1, 100}, 11: {10, 50}, 12: {10, 7}, 13: {12, 3}, 20: {1, 999}})
	got, err := p.Tree([]int{10})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{10, 11, 12, 13}; !slices.Equal(got, want) {
		t.Errorf("Tree(10) = %v, want %v", got, want)
	}
	ticks := p.CPUTicks(append(got, 404)) // 404 does not exist: left out
	if len(ticks) != 4 || ticks[10] != 101 || ticks[13] != 4 {
		t.Errorf("CPUTicks = %v", ticks)
	}
	pss, err := p.PSS(got)
	if err != nil || pss != (100+50+7+3)<<10 {
		t.Errorf("PSS = %d, %v; want %d", pss, err, (100+50+7+3)<<10)
	}
	if _, err := p.Tree([]int{404}); err == nil {
		t.Error("Tree of a dead root: no error")
	}
	if _, err := p.PSS([]int{404}); err == nil {
		t.Error("PSS of a dead pid: no error")
	}
}

func TestCPUDelta(t *testing.T) {
	before := map[int]int64{1: 100, 2: 50, 3: 10}
	after := map[int]int64{1: 130, 2: 55, 4: 7} // 3 exited, 4 started
	if got := CPUDelta(before, after); got != 30+5+7 {
		t.Errorf("CPUDelta = %d, want 42", got)
	}
}

func TestProcSelf(t *testing.T) {
	var p Proc // the real /proc
	pids, err := p.Tree([]int{os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pids, os.Getpid()) {
		t.Fatalf("Tree(self) = %v lacks %d", pids, os.Getpid())
	}
	if _, ok := p.CPUTicks(pids)[os.Getpid()]; !ok {
		t.Error("no CPU ticks for this process")
	}
	pss, err := p.PSS([]int{os.Getpid()})
	if err != nil || pss <= 0 {
		t.Errorf("PSS(self) = %d, %v", pss, err)
	}
}

func TestDirBytes(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "a", "b", "f"), make([]byte, 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := DirBytes(dir)
	if err != nil || n < 10000 {
		t.Errorf("DirBytes = %d, %v; want at least 10000", n, err)
	}
	if n, err := DirBytes(""); n != 0 || err != nil {
		t.Errorf(`DirBytes("") = %d, %v`, n, err)
	}
	if _, err := DirBytes(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("DirBytes(missing) = %v, want 0 and no error (nothing cached yet)", err)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("42 (nginx) S 7 42 42 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 1 0"))
	f.Add([]byte("99 (a (b) c) R 1 99 99 0 -1 0 0 0 0 0 3 4"))
	f.Add([]byte("1 (x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseStat(b)
		if err == nil && (s.ppid < 0 || s.utime < 0 || s.stime < 0) {
			t.Errorf("parseStat(%q) = %+v", b, s)
		}
	})
}
