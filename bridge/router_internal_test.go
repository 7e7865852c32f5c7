package bridge

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/inbound"
)

// TestPartitionsTakeEachMessageOnce: every hl7.received message is handled
// by exactly one map partition, always the same one for one order key, and
// an unreadable payload by partition 0 alone (which sets it aside).
func TestPartitionsTakeEachMessageOnce(t *testing.T) {
	handledBy := map[string][]int{}
	var handlers []message.NoPublishHandlerFunc
	for i := range MapPartitions {
		handlers = append(handlers, partition(i, func(msg *message.Message) error {
			handledBy[msg.UUID] = append(handledBy[msg.UUID], i)
			return nil
		}))
	}
	perKey := map[uint32]int{}
	used := map[int]bool{}
	for n := range 200 {
		key := uint32(n*7) % inbound.OrderKeys
		b, _ := json.Marshal(inbound.Received{InboundID: fmt.Sprintf("in-%d", n), MessageType: "ADT^A01", OrderKey: key})
		id := fmt.Sprintf("m-%d", n)
		for _, h := range handlers {
			if err := h(message.NewMessage(id, b)); err != nil {
				t.Fatal(err)
			}
		}
		if len(handledBy[id]) != 1 {
			t.Fatalf("message %d with key %d handled by partitions %v, want one", n, key, handledBy[id])
		}
		p := handledBy[id][0]
		used[p] = true
		if q, ok := perKey[key]; ok && q != p {
			t.Fatalf("key %d went to partitions %d and %d", key, q, p)
		}
		perKey[key] = p
	}
	if len(used) != MapPartitions {
		t.Errorf("partitions used: %v, want all %d", used, MapPartitions)
	}
	for _, h := range handlers {
		h(message.NewMessage("garbage", []byte("not json")))
	}
	if got := handledBy["garbage"]; len(got) != 1 || got[0] != 0 {
		t.Errorf("an unreadable payload was handled by %v, want partition 0 only", got)
	}
}
