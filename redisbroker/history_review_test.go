package redisbroker

import (
	"fmt"
	"testing"

	"github.com/primusgo/primus"

	"github.com/primusgo/primus/internal/redistest"
)

// A meta hash whose offset is a number Lua cannot return as an integer
// (beyond 2^53, 1e300, inf) is treated as corrupt: reads and writes go on
// (a new epoch) instead of failing for as long as the meta lives, and a
// reader and the next writer agree on the position.
func TestHistoryHugeMetaOffset(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	a, _, _ := historyBroker(t, cfg)
	_, meta := HistoryKeys(cfg.Channel, "r")
	publishHistory(t, a, "r", "1")
	for _, s := range []string{"9223372036854775807", "18446744073709551615", "1e300", "inf", "9007199254740993", "0x10", "1.0"} {
		if _, err := srv.Do("HSET", meta, "s", s); err != nil {
			t.Fatal(err)
		}
		p, err := a.Position(ctx(t), "r")
		if err != nil {
			t.Errorf("Position with s=%s: %v", s, err)
		}
		if _, _, err := a.History(ctx(t), "r", 0, 10); err != nil {
			t.Errorf("History with s=%s: %v", s, err)
		}
		if w := publishHistory(t, a, "r", "2"); w.Offset != p.Offset+1 || w.Epoch != p.Epoch {
			t.Errorf("s=%s: Position %+v, then a write at %+v", s, p, w)
		}
	}
}

// An offset moved back under the room's stream (someone wrote the meta)
// starts a new epoch: reusing offsets that nodes and clients delivered
// already would make them drop the new writes as duplicates.
func TestHistoryMetaOffsetBackwards(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := testConfig(srv.Addr(), Native, freshChannel())
	a, _, _ := historyBroker(t, cfg)
	_, meta := HistoryKeys(cfg.Channel, "r")
	var last primus.HistoryPosition
	for i := range 5 {
		last = publishHistory(t, a, "r", fmt.Sprint(i))
	}
	if _, err := srv.Do("HSET", meta, "s", "2"); err != nil {
		t.Fatal(err)
	}
	if w := publishHistory(t, a, "r", "6"); w.Epoch == last.Epoch {
		t.Fatalf("after moving the offset back from %+v: a write at %+v", last, w)
	}
}
