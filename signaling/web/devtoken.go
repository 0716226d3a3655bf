package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"strings"

	"github.com/medcall/medcall/sfu/ident"
	"github.com/medcall/medcall/signaling/token"
)

// maxDevRequest bounds a /dev/token request body.
const maxDevRequest = 4 << 10

// DevTokenRequest is the body of POST /dev/token.
type DevTokenRequest struct {
	Role   string `json:"role"`             // patient, clinician or guest
	Sub    string `json:"sub"`              // participant id; a patient's defaults to pid
	CID    string `json:"cid,omitempty"`    // consultation id (join tokens)
	PID    string `json:"pid,omitempty"`    // the consultation's patient (join tokens)
	Rec    bool   `json:"rec,omitempty"`    // record the consultation (join tokens)
	Replay bool   `json:"replay,omitempty"` // a replay token: no cid, pid or rec
}

// devToken mints development tokens for callers on this machine only. It
// never logs: the response is a credential.
type devToken struct {
	mint func(role, sub, cid, pid string, rec bool, replay bool) (string, error)
}

func (d *devToken) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if err := loopbackOnly(r); err != nil {
		jsonError(w, http.StatusForbidden, err.Error())
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		// Also keeps other web sites out: a cross-origin JSON POST needs a
		// CORS preflight, which this server never grants.
		jsonError(w, http.StatusUnsupportedMediaType, "send the request as application/json")
		return
	}
	if d.mint == nil {
		jsonError(w, http.StatusInternalServerError, "dev token minting is not configured (Options.Mint is nil)")
		return
	}
	var req DevTokenRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxDevRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		jsonError(w, http.StatusBadRequest, "malformed request: "+err.Error())
		return
	}
	if err := req.validate(); err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	tok, err := d.mint(req.Role, req.Sub, req.CID, req.PID, req.Rec, req.Replay)
	if err != nil {
		jsonError(w, http.StatusInternalServerError, "could not mint a token: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": tok})
}

// validate applies the rules the server will apply to the token, so a bad
// form fails here with a message a developer can act on.
func (q *DevTokenRequest) validate() error {
	switch q.Role {
	case token.RolePatient, token.RoleClinician, token.RoleGuest:
	case "":
		return errors.New("role is required (patient, clinician or guest)")
	default:
		return fmt.Errorf("role %q is not one of patient, clinician, guest", q.Role)
	}
	if q.Sub == "" && q.Role == token.RolePatient && !q.Replay {
		q.Sub = q.PID
	}
	ids := []struct{ name, v string }{{"sub", q.Sub}}
	if q.Replay {
		if q.CID != "" || q.PID != "" || q.Rec {
			return errors.New("a replay token takes no cid, pid or rec")
		}
		if q.Role == token.RoleGuest {
			return errors.New("guests have no replay")
		}
	} else {
		ids = append(ids, struct{ name, v string }{"cid", q.CID}, struct{ name, v string }{"pid", q.PID})
	}
	for _, id := range ids {
		if !token.ValidID(id.v) {
			return fmt.Errorf("%s must match %s (a pseudonym, not a name or e-mail address)", id.name, ident.Pattern)
		}
	}
	if !q.Replay && q.Role == token.RolePatient && q.Sub != q.PID {
		return errors.New("a patient's sub must equal pid")
	}
	return nil
}

// loopbackOnly refuses a request unless it comes from this machine, directly:
// the peer address is loopback, no proxy forwarded it (behind a local reverse
// proxy every caller would look local) and the Host is a loopback name (so a
// DNS-rebinding page cannot reach it).
func loopbackOnly(r *http.Request) error {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return errors.New("dev tokens are only minted for callers on this machine (loopback)")
	}
	if r.Header.Get("Forwarded") != "" || r.Header.Get("X-Forwarded-For") != "" {
		return errors.New("dev tokens are not minted for requests through a proxy")
	}
	h := r.Host
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if ip := net.ParseIP(h); !strings.EqualFold(h, "localhost") && (ip == nil || !ip.IsLoopback()) {
		return errors.New("dev tokens are only minted when the page is opened as localhost or a loopback address")
	}
	return nil
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
