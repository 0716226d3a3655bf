package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Audit is the cluster's audit log: one Redis stream that every node
// appends to, durable with the append-only file, read in order by an
// auditor (XRANGE). Entries are never trimmed or edited by medcall.
type Audit struct {
	Redis *redis.Client
	// Node names the node that writes, in each entry.
	Node string
}

// AuditEntry is one entry as read back.
type AuditEntry struct {
	ID    string          // the stream id: time-ordered across nodes
	Node  string          // the node that wrote it
	Event json.RawMessage // the event as the node wrote it
}

// Append adds ev (JSON-encoded) to the log.
func (a *Audit) Append(ev any) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err = a.Redis.XAdd(ctx, &redis.XAddArgs{Stream: keyAudit, Values: []any{"node", a.Node, "event", string(b)}}).Err()
	if err != nil {
		return fmt.Errorf("cluster: append to the audit stream: %w", err)
	}
	return nil
}

// Read returns every entry in order.
func (a *Audit) Read(ctx context.Context) ([]AuditEntry, error) {
	msgs, err := a.Redis.XRange(ctx, keyAudit, "-", "+").Result()
	if err != nil {
		return nil, fmt.Errorf("cluster: read the audit stream: %w", err)
	}
	out := make([]AuditEntry, 0, len(msgs))
	for _, m := range msgs {
		node, _ := m.Values["node"].(string)
		ev, _ := m.Values["event"].(string)
		out = append(out, AuditEntry{ID: m.ID, Node: node, Event: json.RawMessage(ev)})
	}
	return out, nil
}
