package cluster_test

import (
	"testing"

	"github.com/meridiancdn/meridian/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m)
}
