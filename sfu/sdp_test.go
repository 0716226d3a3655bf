package sfu

import (
	"errors"
	"strings"
	"testing"
)

func offer(mlines ...string) string {
	return "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" + strings.Join(mlines, "")
}

func mline(kind, mid, dir string, port int) string {
	p := "9"
	if port == 0 {
		p = "0"
	}
	return "m=" + kind + " " + p + " UDP/TLS/RTP/SAVPF 96\r\na=mid:" + mid + "\r\na=" + dir + "\r\n"
}

func TestSendingMedia(t *testing.T) {
	got, err := sendingMedia(offer(mline("audio", "0", "sendonly", 9), mline("video", "1", "sendrecv", 9), mline("video", "2", "inactive", 9), mline("video", "3", "sendonly", 0)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["0"] != KindAudio || got["1"] != KindVideo {
		t.Fatalf("got %v", got)
	}
	for name, bad := range map[string]string{
		"two cameras": offer(mline("video", "0", "sendonly", 9), mline("video", "1", "sendonly", 9)),
		"no mid":      offer("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n"),
		"not sdp":     "hello",
		"huge":        offer(strings.Repeat("a=x\r\n", maxSDP)),
	} {
		if _, err := sendingMedia(bad); !errors.Is(err, ErrBadSDP) {
			t.Errorf("%s: got %v, want ErrBadSDP", name, err)
		}
	}
}
