package serverapp

import (
	"runtime"
	"runtime/debug"
)

// Version is the release, set at build time with
// -ldflags "-X github.com/primusgo/primus/internal/serverapp.Version=v1.2.3";
// otherwise the module version or VCS revision Go recorded is used.
var Version = ""

type version struct {
	version, revision, goVersion string
	modified                     bool
}

func buildVersion() version {
	v := version{version: Version, goVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.version == "" {
			v.version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.revision = s.Value
			case "vcs.modified":
				v.modified = s.Value == "true"
			}
		}
	}
	if v.version == "" {
		v.version = "(devel)"
	}
	return v
}

func (v version) String() string {
	s := v.version
	if v.revision != "" {
		rev := v.revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " " + rev
		if v.modified {
			s += "+dirty"
		}
	}
	return s + " " + v.goVersion
}
