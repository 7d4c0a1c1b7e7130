package primus_test

import (
	"testing"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/brokertest"
)

func TestMemoryBrokerConformance(t *testing.T) {
	brokertest.Run(t, func(t testing.TB, n int) []primus.Broker {
		hub := primus.NewMemoryHub()
		nodes := make([]primus.Broker, n)
		for i := range nodes {
			nodes[i] = hub.NewBroker()
		}
		return nodes
	})
}
