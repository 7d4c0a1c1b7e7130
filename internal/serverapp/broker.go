package serverapp

import (
	"errors"
	"log/slog"

	"github.com/primusgo/primus"
)

// newBroker builds the broker the configuration asks for (nil: in-memory).
func newBroker(r RedisConfig, log *slog.Logger) (primus.Broker, error) {
	if !r.Enabled() {
		return nil, nil
	}
	return nil, errors.New("redis broker: not available in this build yet")
}
