package authserver

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Limits on what a client may register.
const (
	maxRedirectURIs     = 10
	maxRedirectURIBytes = 2000
)

// ValidateRedirectURI checks a redirect URI at registration: an absolute URI
// without fragment or user info; https anywhere, http only on loopback
// (RFC 8252 §7.3), or a native app's private-use scheme (RFC 8252 §7.1, such
// as cursor://). Schemes a browser would execute or read locally are refused.
func ValidateRedirectURI(raw string) error {
	if len(raw) > maxRedirectURIBytes {
		return fmt.Errorf("redirect URI longer than %d bytes", maxRedirectURIBytes)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return fmt.Errorf("redirect URI %q is not an absolute URI", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("redirect URI %q must not contain a fragment", raw)
	}
	if u.User != nil {
		return fmt.Errorf("redirect URI %q must not contain user information", raw)
	}
	switch scheme := strings.ToLower(u.Scheme); scheme {
	case "https":
		if u.Host == "" {
			return fmt.Errorf("redirect URI %q has no host", raw)
		}
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("redirect URI %q uses http on a non-loopback host; use https, or http://127.0.0.1 for a native app", raw)
		}
	case "javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "ws", "wss", "ftp":
		return fmt.Errorf("redirect URI scheme %q is not allowed", scheme)
	default:
		if u.Opaque != "" && u.Host == "" && u.Path == "" {
			return fmt.Errorf("redirect URI %q is not a usable private-use URI", raw)
		}
	}
	return nil
}

// redirectURIMatches compares a requested redirect URI with the registered
// ones: exact string match, except that a loopback http redirect matches on
// any port (RFC 8252 §7.3; native apps pick a free port each time).
func redirectURIMatches(registered []string, requested string) bool {
	for _, r := range registered {
		if r == requested {
			return true
		}
	}
	if !isLoopbackRedirect(requested) {
		return false
	}
	req, _ := url.Parse(requested)
	for _, r := range registered {
		if !isLoopbackRedirect(r) {
			continue
		}
		reg, _ := url.Parse(r)
		if reg.Hostname() == req.Hostname() && reg.EscapedPath() == req.EscapedPath() && reg.RawQuery == req.RawQuery {
			return true
		}
	}
	return false
}

// isLoopbackRedirect reports whether raw is an http redirect URI on a
// loopback host, with nothing in it that makes the host ambiguous.
func isLoopbackRedirect(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Fragment != "" {
		return false
	}
	return isLoopbackHost(u.Hostname())
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var errNoRedirectURIs = errors.New("redirect_uris is required and must list at least one redirect URI")
