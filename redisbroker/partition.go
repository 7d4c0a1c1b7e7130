package redisbroker

import (
	"hash/fnv"
	"strconv"
	"sync"
)

// Cluster-mode channel naming.
//
// Rooms are spread over ClusterPartitions partitions by a stable hash of
// the room name (FNV-1a, 32 bits, modulo the partition count), and every
// channel of partition i carries the hash tag {<tag i>}, so that all of
// them share one slot, and thus one shard:
//
//	<Channel>:{<tag>}:room:<room>   a room's channel
//	<Channel>:{<tag>}:svc           the partition's service channel
//
// The tag of partition i of n is the smallest decimal number whose key slot
// is (2i+1)·16384/(2n) (integer division): the partitions' slots are spread
// evenly over the 16384 slots, so a cluster whose shards own contiguous,
// equal slot ranges (what redis-cli --cluster create and rebalance make)
// gets as many partitions per shard as possible give or take one.

// numSlots is the number of Redis Cluster hash slots.
const numSlots = 16384

var tagCache sync.Map // partition count -> []string

// partitionTags returns the hash tags of n partitions (1 <= n <= 16384).
func partitionTags(n int) []string {
	if v, ok := tagCache.Load(n); ok {
		return v.([]string)
	}
	want := make(map[int]int, n) // slot -> partition
	for i := range n {
		want[partitionSlot(i, n)] = i
	}
	tags := make([]string, n)
	found := 0
	var buf []byte
	for k := 0; found < n; k++ {
		buf = strconv.AppendInt(buf[:0], int64(k), 10)
		if i, ok := want[crc16Slot(buf)]; ok && tags[i] == "" {
			tags[i] = string(buf)
			found++
		}
	}
	tagCache.Store(n, tags)
	return tags
}

// partitionSlot is the slot partition i of n lives in.
func partitionSlot(i, n int) int { return (2*i + 1) * numSlots / (2 * n) }

// partitionOf is the partition of room among n.
func partitionOf(room string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(room))
	return int(h.Sum32() % uint32(n))
}

// crc16Slot is the Redis Cluster key slot of key, which must not contain a
// hash tag (CRC16/XMODEM modulo 16384).
func crc16Slot(key []byte) int {
	var crc uint16
	for _, b := range key {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) & (numSlots - 1)
}

// ClusterRoomChannel is the cluster-mode (sharded) channel of room under
// prefix with the given partition count: what an external publisher
// SPUBLISHes a native envelope to.
func ClusterRoomChannel(prefix string, partitions int, room string) string {
	tags := partitionTags(partitions)
	return prefix + ":{" + tags[partitionOf(room, partitions)] + "}:room:" + room
}

// ClusterServiceChannel is the service channel of partition i of n under
// prefix: every cluster-mode node subscribes to it, idle probes and the
// multi-room writes too large to fan out per room travel on it.
func ClusterServiceChannel(prefix string, partitions, i int) string {
	return prefix + ":{" + partitionTags(partitions)[i] + "}:svc"
}
