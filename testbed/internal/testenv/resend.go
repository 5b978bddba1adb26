package testenv

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
)

// ResendAfterReload wraps base for clients of a Caddy whose config the
// tests reload. During a reload the old and new servers share the
// listening socket, and a connection the old one accepted is closed as it
// shuts down, before any answer: the request then fails with EOF or a
// reset, whatever its method. Go resends only idempotent requests on an
// idle connection that broke; this resends any request whose body it can
// read again, once, when the connection ended before an answer began.
// Tests only: a real client cannot know that its POST was not processed.
func ResendAfterReload(base http.RoundTripper) http.RoundTripper {
	return &resender{base: base}
}

type resender struct{ base http.RoundTripper }

func (r *resender) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err == nil || !endedBeforeAnswer(err) || (req.Body != nil && req.GetBody == nil) || req.Context().Err() != nil {
		return resp, err
	}
	again := req.Clone(req.Context())
	if req.GetBody != nil {
		body, berr := req.GetBody()
		if berr != nil {
			return nil, err
		}
		again.Body = body
	}
	return r.base.RoundTrip(again)
}

// CloseIdleConnections closes the idle connections of the transport it
// wraps, as http.Client.CloseIdleConnections expects.
func (r *resender) CloseIdleConnections() {
	if c, ok := r.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func endedBeforeAnswer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		// net/http's own error for a kept-alive connection the server
		// closed as the request went out, which it does not export.
		strings.Contains(err.Error(), "server closed idle connection")
}
