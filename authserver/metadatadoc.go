package authserver

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/grants"
	"github.com/caddy-mcp-gateway/caddy-mcp-gateway/internal/expirycache"
)

// MetadataDocumentOptions configure how client ID metadata documents are
// fetched.
type MetadataDocumentOptions struct {
	// AllowPrivate permits fetching from any address: loopback, private,
	// link-local and every other range off the public Internet. Off by
	// default: a URL client ID must not become a way into the private
	// network (SSRF); see publicAddress.
	AllowPrivate bool
	Timeout      time.Duration // default 5s
	MaxBytes     int64         // default 64 KiB
	CacheTTL     time.Duration // default 5m
	CacheSize    int           // default 1000
}

// MetadataDocumentFetcher fetches and caches client ID metadata documents:
// clients (Claude Code, ChatGPT) whose client_id is an https URL serving
// their metadata.
type MetadataDocumentFetcher struct {
	opts   MetadataDocumentOptions
	client *http.Client

	seed  maphash.Seed
	cache *expirycache.Cache[string, cachedDocument] // by client ID
}

// cachedDocument is a fetched document's client, or why it was refused.
type cachedDocument struct {
	client *grants.Client
	err    error
}

// NewMetadataDocumentFetcher returns a fetcher; it performs no I/O.
func NewMetadataDocumentFetcher(opts MetadataDocumentOptions) *MetadataDocumentFetcher {
	setDefault(&opts.Timeout, 5*time.Second)
	setDefault(&opts.CacheTTL, 5*time.Minute)
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 64 << 10
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 1000
	}
	dialer := &net.Dialer{Timeout: opts.Timeout}
	if !opts.AllowPrivate {
		dialer.Control = dialPublicOnly
	}
	transport := &http.Transport{
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   opts.Timeout,
		ResponseHeaderTimeout: opts.Timeout,
		MaxIdleConns:          10,
		IdleConnTimeout:       30 * time.Second,
	}
	return &MetadataDocumentFetcher{
		opts: opts,
		client: &http.Client{
			Transport: transport,
			Timeout:   opts.Timeout,
			// A document must be served at its own URL: redirects could
			// lead to private addresses or to another client's document.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		seed:  maphash.MakeSeed(),
		cache: expirycache.New[string, cachedDocument](opts.CacheSize),
	}
}

// isMetadataDocumentURL reports whether a client ID is a metadata document
// URL: https with a path (the MCP specification's form).
// maxClientIDURLBytes bounds a URL client ID: real ones are short, and a
// long one would only fill the document cache and the log.
const maxClientIDURLBytes = 2048

func isMetadataDocumentURL(id string) bool {
	u, err := url.Parse(id)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.Path != "" && u.Path != "/"
}

// Client returns the client described by the document at clientID.
func (f *MetadataDocumentFetcher) Client(ctx context.Context, clientID string) (*grants.Client, error) {
	if len(clientID) > maxClientIDURLBytes {
		// Refused before it is cached or logged whole.
		return nil, fmt.Errorf("the client ID URL is longer than %d bytes", maxClientIDURLBytes)
	}
	now := time.Now()
	h := maphash.String(f.seed, clientID)
	if c, ok := f.cache.Get(h, clientID, now.UnixNano()); ok {
		return c.client, c.err
	}

	client, err := f.fetch(ctx, clientID)
	ttl := f.opts.CacheTTL
	if err != nil {
		ttl = 10 * time.Second // remember failures briefly, to blunt floods
	}
	f.cache.Put(h, clientID, cachedDocument{client: client, err: err}, now.Add(ttl).UnixNano(), now.UnixNano())
	return client, err
}

func (f *MetadataDocumentFetcher) fetch(ctx context.Context, clientID string) (*grants.Client, error) {
	u, err := url.Parse(clientID)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" && !(f.opts.AllowPrivate && u.Scheme == "http") {
		return nil, errors.New("a client ID metadata document must be served over https")
	}
	if !isASCII(u.Host) {
		// The consent page names the client by this host: in Unicode, a
		// look-alike of another application's host could pass for it.
		return nil, errors.New("the client ID's host must be written in ASCII (an internationalized name in its xn-- form)")
	}
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientID, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching it failed: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching it answered HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.opts.MaxBytes+1))
	if err != nil {
		return nil, errors.New("reading it failed")
	}
	if int64(len(body)) > f.opts.MaxBytes {
		return nil, fmt.Errorf("it is larger than %d bytes", f.opts.MaxBytes)
	}
	md, err := parseClientMetadata(body)
	if err != nil {
		return nil, err
	}
	if md.ClientID != clientID {
		return nil, fmt.Errorf("its client_id %q differs from the URL it was fetched from", md.ClientID)
	}
	if md.TokenEndpointAuthMethod != "" && md.TokenEndpointAuthMethod != "none" {
		return nil, fmt.Errorf("token_endpoint_auth_method %q is not supported for metadata document clients; use none", md.TokenEndpointAuthMethod)
	}
	return md.toClient(grants.SourceMetadataDocument)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
