package store_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/medcall/medcall/recorder/store"
)

const rid = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"

func TestRecordingKeys(t *testing.T) {
	webm, man, err := store.RecordingKeys("p-1", "c_42", rid)
	if err != nil {
		t.Fatal(err)
	}
	if want := "patients/p-1/consultations/c_42/" + rid + ".webm"; webm != want {
		t.Errorf("webm key = %q, want %q", webm, want)
	}
	if want := "patients/p-1/consultations/c_42/" + rid + ".manifest.json"; man != want {
		t.Errorf("manifest key = %q, want %q", man, want)
	}
	for _, k := range []string{webm, man} {
		if err := store.ValidateKey(k); err != nil {
			t.Errorf("built key %q fails ValidateKey: %v", k, err)
		}
	}
}

func TestRecordingKeysRefusesBadIDs(t *testing.T) {
	long := strings.Repeat("a", 65)
	tests := []struct{ name, pid, cid, rid string }{
		{"empty patient", "", "c1", rid},
		{"patient with slash", "p1/../p2", "c1", rid},
		{"patient with dot", "p.1", "c1", rid},
		{"patient too long", long, "c1", rid},
		{"patient e-mail", "a@b.example", "c1", rid},
		{"consultation traversal", "p1", "..", rid},
		{"consultation with space", "p1", "c 1", rid},
		{"consultation with NUL", "p1", "c\x001", rid},
		{"rid not uuid", "p1", "c1", "not-a-uuid"},
		{"rid uppercase", "p1", "c1", strings.ToUpper(rid)},
		{"rid with suffix", "p1", "c1", rid + "/x"},
		{"rid empty", "p1", "c1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, m, err := store.RecordingKeys(tt.pid, tt.cid, tt.rid)
			if !errors.Is(err, store.ErrInvalidKey) {
				t.Fatalf("RecordingKeys(%q, %q, %q) = %q, %q, %v; want ErrInvalidKey", tt.pid, tt.cid, tt.rid, w, m, err)
			}
			if w != "" || m != "" {
				t.Errorf("keys returned with an error: %q %q", w, m)
			}
		})
	}
}

func TestValidateKeyRefusals(t *testing.T) {
	tests := []struct{ name, key, why string }{
		{"empty", "", "empty"},
		{"absolute", "/etc/passwd", "absolute"},
		{"parent", "../x", `".."`},
		{"parent in middle", "a/../../x", `".."`},
		{"dot segment", "a/./b", `"."`},
		{"only dots", "..", `".."`},
		{"backslash", `a\..\b`, "backslash"},
		{"windows drive", `C:\x`, "backslash"},
		{"NUL", "a/b\x00c", "control"},
		{"newline", "a/b\nc", "control"},
		{"DEL", "a/b\x7f", "control"},
		{"empty segment", "a//b", "empty segment"},
		{"trailing slash", "a/b/", "ends with"},
		{"hidden", "a/.tmp-123", "hidden"},
		{"bad utf8", "a/\xff", "UTF-8"},
		{"too long", strings.Repeat("a", store.MaxKeyLen+1), "bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := store.ValidateKey(tt.key)
			if !errors.Is(err, store.ErrInvalidKey) {
				t.Fatalf("ValidateKey(%q) = %v, want ErrInvalidKey", tt.key, err)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Errorf("ValidateKey(%q) error %q does not say %q", tt.key, err, tt.why)
			}
		})
	}
}

func TestValidatePrefix(t *testing.T) {
	for _, ok := range []string{"", "patients/", "patients/p1/consultations/"} {
		if err := store.ValidatePrefix(ok); err != nil {
			t.Errorf("ValidatePrefix(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"patients", "/", "../", "patients//", "patients/p1", `a\b/`} {
		if err := store.ValidatePrefix(bad); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("ValidatePrefix(%q) = %v, want ErrInvalidKey", bad, err)
		}
	}
}
