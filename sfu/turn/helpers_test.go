package turn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"math/big"
	"net"
	"testing"
	"time"
)

// selfSigned is a certificate for 127.0.0.1 and localhost.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "medcall test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// junkPackets returns n datagrams a hostile or broken client might send:
// random bytes, STUN headers with lying lengths, TURN methods without
// attributes, ChannelData for channels that do not exist, empty packets.
func junkPackets(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		var p []byte
		switch i % 6 {
		case 0: // random bytes
			p = make([]byte, 1+i%300)
			_, _ = rand.Read(p)
		case 1: // STUN header claiming more attributes than sent
			p = stunHeader(0x0003, 400) // Allocate request
		case 2: // STUN Binding, magic cookie right, attributes garbage
			p = append(stunHeader(0x0001, 8), 0x00, 0x06, 0xff, 0xff, 1, 2, 3, 4)
		case 3: // Send indication with no XOR-PEER-ADDRESS
			p = stunHeader(0x0016, 0)
		case 4: // ChannelData for an unbound channel, length lying
			p = []byte{0x40, 0x01, 0x05, 0xdc, 1, 2, 3}
		case 5: // CreatePermission / ChannelBind / Refresh without auth
			p = stunHeader([]uint16{0x0008, 0x0009, 0x0004}[i%3], 0)
		}
		out[i] = p
	}
	return out
}

func stunHeader(typ uint16, length uint16) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], typ)
	binary.BigEndian.PutUint16(h[2:], length)
	binary.BigEndian.PutUint32(h[4:], 0x2112A442)
	_, _ = rand.Read(h[8:])
	return h
}
