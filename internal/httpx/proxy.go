package httpx

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// forwardedHeaders are the request headers a proxy uses to describe the
// client. They are believed only from a trusted proxy and removed from every
// other request, so no later layer can believe them by mistake.
var forwardedHeaders = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-Ip", "Forwarded"}

// TrustedProxies is the set of networks whose X-Forwarded-For and
// X-Forwarded-Proto headers are believed (TRUSTED_PROXIES). The zero value
// and nil trust nobody.
type TrustedProxies struct {
	nets []netip.Prefix
}

// NewTrustedProxies parses CIDRs ("10.0.0.0/8", "fd00::/8") and single
// addresses ("192.0.2.7", a /32 or /128). An entry that is neither is an
// error naming it.
func NewTrustedProxies(cidrs []string) (*TrustedProxies, error) {
	p := &TrustedProxies{}
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if pfx, err := netip.ParsePrefix(c); err == nil {
			p.nets = append(p.nets, pfx.Masked())
			continue
		}
		a, err := netip.ParseAddr(c)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR or an IP address", c)
		}
		a = a.Unmap().WithZone("")
		p.nets = append(p.nets, netip.PrefixFrom(a, a.BitLen()))
	}
	return p, nil
}

// Trusted reports whether a is inside a trusted network.
func (p *TrustedProxies) Trusted(a netip.Addr) bool {
	if p == nil || !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, n := range p.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

type peerInfo struct {
	remoteAddr string // the TCP peer, before any rewrite
	https      bool   // a trusted proxy said the client used https
}

// Middleware resolves the client of a request. When the TCP peer is a
// trusted proxy, the client address is the rightmost X-Forwarded-For entry
// that is not itself a trusted proxy (proxies append, so entries left of
// it are whatever the client claimed), r.RemoteAddr is rewritten to it (so
// rate limits, logs and traces see the client, not the proxy), and
// X-Forwarded-Proto: https (its last value, set by the nearest proxy)
// marks the request secure for [IsSecure]. From any other peer the
// forwarded headers are removed and r.RemoteAddr is kept.
//
// Install it first, before anything reads r.RemoteAddr.
func (p *TrustedProxies) Middleware() Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			st, r := claim(r, hasPeer)
			st.peerData = peerInfo{remoteAddr: r.RemoteAddr}
			info := &st.peerData
			st.peer = info
			peer := hostAddr(r.RemoteAddr)
			if !p.Trusted(peer) {
				for _, h := range forwardedHeaders {
					r.Header.Del(h)
				}
				next.ServeHTTP(w, r)
				return
			}
			client := peer
			hops := headerList(r.Header.Values("X-Forwarded-For"))
			for i := len(hops) - 1; i >= 0; i-- {
				a := hostAddr(hops[i])
				if !a.IsValid() {
					break // garbage: keep the last hop we could believe
				}
				client = a
				if !p.Trusted(a) {
					break
				}
			}
			if protos := headerList(r.Header.Values("X-Forwarded-Proto")); len(protos) > 0 {
				info.https = strings.EqualFold(protos[len(protos)-1], "https")
			}
			r.RemoteAddr = net.JoinHostPort(client.String(), "0")
			next.ServeHTTP(w, r)
		})
	}
}

// IsSecure reports whether the client reached the BFF over HTTPS: the
// request came over TLS, or a trusted proxy said so with X-Forwarded-Proto
// (see [TrustedProxies.Middleware]).
func IsSecure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	st := stateOf(r.Context())
	return st != nil && st.peer != nil && st.peer.https
}

// PeerAddr returns the address of the TCP peer of the request (the proxy
// when one forwarded it), as r.RemoteAddr was before
// [TrustedProxies.Middleware] rewrote it; r.RemoteAddr without that
// middleware.
func PeerAddr(r *http.Request) string {
	if st := stateOf(r.Context()); st != nil && st.peer != nil {
		return st.peer.remoteAddr
	}
	return r.RemoteAddr
}

// headerList splits comma-separated header values into trimmed, non-empty
// entries.
func headerList(values []string) []string {
	var out []string
	for _, v := range values {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

// hostAddr parses "ip", "ip:port", "[ipv6]" or "[ipv6]:port"; the zero
// Addr when it is none of them.
func hostAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}
