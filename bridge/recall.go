package bridge

import (
	"encoding/json"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/inbound"
	"github.com/carebridge/carebridge/store"
)

// RecalledEvent is the communication.created event, marked recalled, that
// has the deliver stage tell row.Recipients' connected sessions that its
// sender withdrew the message. Publish it in the transaction that stores
// the recall.
func RecalledEvent(row store.CommunicationRow, corr string) (store.Event, error) {
	b, err := json.Marshal(CommunicationCreated{CommunicationID: row.ID, Priority: row.Priority, Recipients: row.Recipients, Recalled: true})
	if err != nil {
		return store.Event{}, err
	}
	m := message.NewMessage(watermill.NewUUID(), b)
	m.Metadata.Set(inbound.CorrelationIDKey, corr)
	return store.Event{Topic: TopicCommunicationCreated, Message: m}, nil
}
