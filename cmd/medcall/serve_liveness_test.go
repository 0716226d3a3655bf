package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
)

// TestServePingTimeout: `serve --ping-timeout` removes a participant whose
// socket joined and went silent; the other participant is told.
func TestServePingTimeout(t *testing.T) {
	data := t.TempDir()
	addr, _, _ := startServe(t, data, "--ping-timeout", "2s")
	url := "ws://" + addr + "/v1/signal"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	doc, err := client.Dial(ctx, client.Options{URL: url, Token: mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "c-1")})
	if err != nil {
		t.Fatal(err)
	}
	defer doc.Close()
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	join, _ := json.Marshal(signaling.Message{Type: signaling.TypeJoin, ID: "1", Token: mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-1")})
	if err := conn.Write(ctx, websocket.MessageText, join); err != nil {
		t.Fatal(err)
	}
	if _, err := doc.WaitEvent(ctx, func(m signaling.Message) bool { return m.Event == "joined" }); err != nil {
		t.Fatal(err)
	}
	silent := time.Now() // conn is never read again, so it answers no ping
	if _, err := doc.WaitEvent(ctx, func(m signaling.Message) bool { return m.Event == "left" && m.Participant.ID == "p-1" }); err != nil {
		t.Fatalf("silent participant not removed: %v", err)
	}
	if took := time.Since(silent); took > 3*time.Second {
		t.Errorf("removed after %v with --ping-timeout 2s", took)
	}
}
