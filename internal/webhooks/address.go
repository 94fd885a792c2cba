package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/shop/bff/internal/order"
)

// MaxURLLength is the longest endpoint URL accepted.
const MaxURLLength = 2048

// ErrForbiddenAddress is the error of a connection to an address that is
// not public while private addresses are not allowed.
var ErrForbiddenAddress = errors.New("webhooks: the endpoint's address is not a public address")

// nonPublic are the ranges, besides loopback, private and link-local,
// that an outbound webhook never reaches in production.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	netip.MustParsePrefix("2001:db8::/32"),  // documentation
	netip.MustParsePrefix("fec0::/10"),      // deprecated site-local
	netip.MustParsePrefix("100::/64"),       // discard-only
	netip.MustParsePrefix("2002::/16"),      // 6to4 (may embed any IPv4)
	netip.MustParsePrefix("::ffff:0:0/96"),  // IPv4-mapped (checked unmapped too)
	netip.MustParsePrefix("64:ff9b::/96"),   // NAT64 (may embed any IPv4)
	netip.MustParsePrefix("2001::/32"),      // Teredo (may embed any IPv4)
	netip.MustParsePrefix("fc00::/7"),       // unique local
	netip.MustParsePrefix("ff00::/8"),       // multicast
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast
	netip.MustParsePrefix("169.254.0.0/16"), // link-local (cloud metadata)
	netip.MustParsePrefix("fe80::/10"),      // link-local
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback
	netip.MustParsePrefix("::1/128"),        // loopback
	netip.MustParsePrefix("10.0.0.0/8"),     // private
	netip.MustParsePrefix("172.16.0.0/12"),  // private
	netip.MustParsePrefix("192.168.0.0/16"), // private
	netip.MustParsePrefix("::/128"),         // unspecified
}

// PublicAddress reports whether ip is a public unicast address: not
// loopback, private, link-local, multicast, unspecified nor reserved.
func PublicAddress(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// CheckURL validates an endpoint URL at registration: an absolute http(s)
// URL with a host, no credentials, at most MaxURLLength bytes. Unless
// allowPrivate, a host that is or resolves to an address that is not
// public is refused (a name that does not resolve now is accepted: the
// dialer checks every connection). The error is BAD_USER_INPUT on field.
func CheckURL(ctx context.Context, raw, field string, allowPrivate bool, resolver *net.Resolver) error {
	if len(raw) > MaxURLLength {
		return order.BadInput(field, order.ConstraintLength, fmt.Sprintf("the URL is longer than %d bytes", MaxURLLength)).
			With("max", MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" || u.Opaque != "" {
		return order.BadInput(field, order.ConstraintFormat, "the URL must be an absolute http:// or https:// URL")
	}
	if u.User != nil {
		return order.BadInput(field, order.ConstraintFormat, "the URL must not carry credentials")
	}
	if u.Fragment != "" {
		return order.BadInput(field, order.ConstraintFormat, "the URL must not have a fragment")
	}
	if allowPrivate {
		return nil
	}
	refused := order.BadInput(field, order.ConstraintFormat,
		"the URL's host is not a public address (loopback, private and link-local addresses are refused)")
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return refused
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !PublicAddress(ip) {
			return refused
		}
		return nil
	}
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addrs, err := resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil // not resolvable now: every connection is checked anyway
	}
	for _, a := range addrs {
		if !PublicAddress(a) {
			return refused
		}
	}
	return nil
}

// dialControl is the net.Dialer Control of outbound webhooks: it refuses
// a connection to an address that is not public (called after DNS
// resolution, for every address tried).
func dialControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, address)
	}
	if !PublicAddress(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
	}
	return nil
}
