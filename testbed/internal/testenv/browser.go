package testenv

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

const (
	// maxPageBytes bounds the body a Browser reads from one response.
	maxPageBytes = 4 << 20
	// maxRedirects matches net/http's default limit.
	maxRedirects = 10
)

// Browser plays a person's browser for tests and scripted clients: it keeps
// cookies, follows redirects, and reads and submits HTML forms. It runs no
// JavaScript. Its methods are safe for concurrent use, though a person, and
// so a test, usually does one thing at a time.
type Browser struct {
	client *http.Client

	mu   sync.Mutex
	stop func(*url.URL) bool
}

// NewBrowser returns a Browser with an empty cookie jar that follows
// redirects until StopAt says otherwise.
func NewBrowser() *Browser {
	jar, _ := cookiejar.New(nil) // never fails without options
	b := &Browser{}
	b.client = &http.Client{
		Jar:           jar,
		Timeout:       30 * time.Second,
		CheckRedirect: b.checkRedirect,
	}
	return b
}

// StopAt makes the browser stop following redirects at a URL for which stop
// returns true, such as an MCP client's redirect_uri; the Page then has that
// URL and the redirect status, and the URL is not fetched. Redirects to
// schemes other than http and https (cursor://, vscode://) always stop.
// StopAt(nil) follows every http(s) redirect again.
func (b *Browser) StopAt(stop func(*url.URL) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stop = stop
}

func (b *Browser) checkRedirect(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return http.ErrUseLastResponse
	}
	b.mu.Lock()
	stop := b.stop
	b.mu.Unlock()
	if stop != nil && stop(req.URL) {
		return http.ErrUseLastResponse
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	return nil
}

// Page is a response as the browser ends up showing it.
type Page struct {
	// URL is the address of the page; after a redirect the browser stopped
	// at, it is the redirect's target.
	URL    *url.URL
	Status int
	Header http.Header
	Body   string
	// Forms are the HTML forms on the page, in document order.
	Forms []*Form
}

// Form is an HTML form as a browser would submit it.
type Form struct {
	ID     string
	Action *url.URL // resolved against the page URL
	Method string   // GET or POST
	// Values holds every successful control with its current value: text,
	// password and hidden inputs, checked boxes, selected options, text
	// areas. Buttons are not included; Submit adds the one pressed.
	Values  url.Values
	Buttons []Button
}

// Button is a submit button of a Form.
type Button struct {
	Name, Value string
	Label       string // visible text, or the value of an input button
}

// Form returns the first form whose ID is id, or nil.
func (p *Page) Form(id string) *Form {
	for _, f := range p.Forms {
		if f.ID == id {
			return f
		}
	}
	return nil
}

// Get loads rawURL.
func (b *Browser) Get(rawURL string) (*Page, error) {
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	return b.do(req)
}

// Submit submits form as if the button named by button were pressed. button
// is "name=value" of a submit button, just "name" when the name alone tells
// it apart, or "" to submit without a button's value (as pressing Enter in
// a field does). extra values replace the form's values of the same name.
func (b *Browser) Submit(form *Form, button string, extra url.Values) (*Page, error) {
	if form == nil || form.Action == nil {
		return nil, errors.New("testenv: no form to submit")
	}
	values := url.Values{}
	for k, v := range form.Values {
		values[k] = append([]string(nil), v...)
	}
	if button != "" {
		pressed, err := form.button(button)
		if err != nil {
			return nil, err
		}
		if pressed.Name != "" {
			values.Add(pressed.Name, pressed.Value)
		}
	}
	for k, v := range extra {
		values[k] = append([]string(nil), v...)
	}

	target := *form.Action
	target.Fragment = ""
	var req *http.Request
	var err error
	if form.Method == http.MethodPost {
		req, err = http.NewRequest(http.MethodPost, target.String(), strings.NewReader(values.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		target.RawQuery = values.Encode()
		req, err = http.NewRequest(http.MethodGet, target.String(), nil)
	}
	if err != nil {
		return nil, err
	}
	return b.do(req)
}

func (f *Form) button(spec string) (Button, error) {
	name, value, withValue := strings.Cut(spec, "=")
	for _, btn := range f.Buttons {
		if btn.Name == name && (!withValue || btn.Value == value) {
			return btn, nil
		}
	}
	return Button{}, fmt.Errorf("testenv: the form has no submit button %q", spec)
}

func (b *Browser) do(req *http.Request) (*Page, error) {
	resp, err := b.client.Do(req)
	if err != nil && strings.Contains(err.Error(), "server closed idle connection") && req.GetBody != nil {
		// A kept-alive connection was closed under the request before any
		// answer (a server reloading, say). Browsers send the request
		// again on a new connection, form posts included; so does this one.
		if req.Body, err = req.GetBody(); err == nil {
			resp, err = b.client.Do(req)
		}
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPageBytes+1))
	if err != nil {
		return nil, fmt.Errorf("testenv: read %s: %w", resp.Request.URL.Redacted(), err)
	}
	if len(body) > maxPageBytes {
		return nil, fmt.Errorf("testenv: page %s is larger than %d bytes", resp.Request.URL.Redacted(), maxPageBytes)
	}
	page := &Page{URL: resp.Request.URL, Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
	if isRedirect(resp.StatusCode) {
		// The browser stopped here: the page is the redirect's target.
		if loc, err := resp.Location(); err == nil {
			page.URL = loc
		}
		return page, nil
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		page.Forms, err = parseForms(page.Body, page.URL)
		if err != nil {
			return nil, err
		}
	}
	return page, nil
}

func isRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// parseForms collects the forms of an HTML document the way a browser
// builds a form data set (HTML Living Standard, "constructing the entry
// list"), limited to what server-rendered login and consent pages use.
func parseForms(body string, base *url.URL) ([]*Form, error) {
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("testenv: parse HTML of %s: %w", base.Redacted(), err)
	}
	var forms []*Form
	var walk func(n *html.Node, form *Form)
	walk = func(n *html.Node, form *Form) {
		if n.Type == html.ElementNode {
			switch n.DataAtom {
			case atom.Form:
				form = newForm(n, base)
				forms = append(forms, form)
			case atom.Input:
				if form != nil {
					addInput(form, n)
				}
			case atom.Button:
				if form != nil && !hasAttr(n, "disabled") {
					if t := strings.ToLower(attr(n, "type")); t == "" || t == "submit" {
						form.Buttons = append(form.Buttons, Button{Name: attr(n, "name"), Value: attr(n, "value"), Label: strings.TrimSpace(text(n))})
					}
				}
			case atom.Select:
				if form != nil {
					addSelect(form, n)
				}
			case atom.Textarea:
				if name := attr(n, "name"); form != nil && name != "" && !hasAttr(n, "disabled") {
					form.Values.Add(name, text(n))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, form)
		}
	}
	walk(doc, nil)
	return forms, nil
}

func newForm(n *html.Node, base *url.URL) *Form {
	action := base
	if a := attr(n, "action"); a != "" {
		if u, err := base.Parse(a); err == nil {
			action = u
		}
	}
	method := http.MethodGet
	if strings.EqualFold(attr(n, "method"), "post") {
		method = http.MethodPost
	}
	return &Form{ID: attr(n, "id"), Action: action, Method: method, Values: url.Values{}}
}

func addInput(form *Form, n *html.Node) {
	if hasAttr(n, "disabled") {
		return
	}
	name, value := attr(n, "name"), attr(n, "value")
	switch strings.ToLower(attr(n, "type")) {
	case "submit":
		label := value
		if label == "" {
			label = "Submit"
		}
		form.Buttons = append(form.Buttons, Button{Name: name, Value: value, Label: label})
	case "checkbox", "radio":
		if name != "" && hasAttr(n, "checked") {
			if !hasAttr(n, "value") {
				value = "on"
			}
			form.Values.Add(name, value)
		}
	case "button", "reset", "image", "file":
		// Not part of the data set without script or a file chooser.
	default:
		if name != "" {
			form.Values.Add(name, value)
		}
	}
}

func addSelect(form *Form, n *html.Node) {
	name := attr(n, "name")
	if name == "" || hasAttr(n, "disabled") {
		return
	}
	var first *html.Node
	selected := false
	var visit func(*html.Node)
	visit = func(c *html.Node) {
		if c.Type == html.ElementNode && c.DataAtom == atom.Option {
			if first == nil {
				first = c
			}
			if hasAttr(c, "selected") {
				form.Values.Add(name, optionValue(c))
				selected = true
			}
		}
		for g := c.FirstChild; g != nil; g = g.NextSibling {
			visit(g)
		}
	}
	visit(n)
	if !selected && first != nil && !hasAttr(n, "multiple") {
		form.Values.Add(name, optionValue(first))
	}
}

func optionValue(n *html.Node) string {
	if hasAttr(n, "value") {
		return attr(n, "value")
	}
	return strings.TrimSpace(text(n))
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}

func text(n *html.Node) string {
	var sb strings.Builder
	var visit func(*html.Node)
	visit = func(c *html.Node) {
		if c.Type == html.TextNode {
			sb.WriteString(c.Data)
		}
		for g := c.FirstChild; g != nil; g = g.NextSibling {
			visit(g)
		}
	}
	visit(n)
	return sb.String()
}
