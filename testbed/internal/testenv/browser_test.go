package testenv

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
)

const consentPage = `<!DOCTYPE html>
<title>Consent</title>
<form id="consent" method="POST" action="/decide?step=2">
  <input type="hidden" name="request" value="r-1">
  <input type="text" name="note" value="hello">
  <input type="text" value="no name, not sent">
  <input type="text" name="off" value="x" disabled>
  <input type="checkbox" name="remember" checked>
  <input type="checkbox" name="marketing" value="yes">
  <input type="radio" name="plan" value="free">
  <input type="radio" name="plan" value="pro" checked>
  <select name="team"><option value="a">A</option><option selected>B</option></select>
  <select name="region"><option value="eu">EU</option><option value="us">US</option></select>
  <textarea name="comment">first line</textarea>
  <button type="submit" name="decision" value="approve">Approve</button>
  <button name="decision" value="deny">Deny</button>
  <button type="button" name="help">Help</button>
  <input type="submit" name="later" value="Decide later">
</form>
<form action="search"><input name="q" value="go"></form>
`

func TestParseForms(t *testing.T) {
	base, _ := url.Parse("http://example.test/consent/page?x=1")
	forms, err := parseForms(consentPage, base)
	if err != nil {
		t.Fatal(err)
	}
	if len(forms) != 2 {
		t.Fatalf("got %d forms, want 2", len(forms))
	}

	consent := forms[0]
	if consent.ID != "consent" || consent.Method != http.MethodPost || consent.Action.String() != "http://example.test/decide?step=2" {
		t.Errorf("consent form id %q method %q action %s", consent.ID, consent.Method, consent.Action)
	}
	wantValues := url.Values{
		"request":  {"r-1"},
		"note":     {"hello"},
		"remember": {"on"},
		"plan":     {"pro"},
		"team":     {"B"},
		"region":   {"eu"},
		"comment":  {"first line"},
	}
	if !reflect.DeepEqual(consent.Values, wantValues) {
		t.Errorf("values\n got %v\nwant %v", consent.Values, wantValues)
	}
	wantButtons := []Button{
		{Name: "decision", Value: "approve", Label: "Approve"},
		{Name: "decision", Value: "deny", Label: "Deny"},
		{Name: "later", Value: "Decide later", Label: "Decide later"},
	}
	if !reflect.DeepEqual(consent.Buttons, wantButtons) {
		t.Errorf("buttons\n got %+v\nwant %+v", consent.Buttons, wantButtons)
	}

	search := forms[1]
	if search.Method != http.MethodGet || search.Action.String() != "http://example.test/consent/search" || search.Values.Get("q") != "go" {
		t.Errorf("search form method %q action %s values %v", search.Method, search.Action, search.Values)
	}
}

// formServer serves the consent page and echoes every submission.
func formServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/consent/page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, consentPage)
	})
	echo := func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		fmt.Fprintf(w, "%s %s", r.Method, r.Form.Encode())
	}
	mux.HandleFunc("/decide", echo)
	mux.HandleFunc("/consent/search", echo)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestBrowserSubmit(t *testing.T) {
	srv := formServer(t)
	tests := []struct {
		name   string
		form   int
		button string
		extra  url.Values
		want   string
	}{
		{"press approve", 0, "decision=approve", nil,
			"POST comment=first+line&decision=approve&note=hello&plan=pro&region=eu&remember=on&request=r-1&step=2&team=B"},
		{"press deny, extra replaces", 0, "decision=deny", url.Values{"note": {"bye"}, "marketing": {"yes"}},
			"POST comment=first+line&decision=deny&marketing=yes&note=bye&plan=pro&region=eu&remember=on&request=r-1&step=2&team=B"},
		{"button by name alone", 0, "later", nil,
			"POST comment=first+line&later=Decide+later&note=hello&plan=pro&region=eu&remember=on&request=r-1&step=2&team=B"},
		{"no button", 1, "", url.Values{"q": {"mcp"}}, "GET q=mcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBrowser()
			page, err := b.Get(srv.URL + "/consent/page")
			if err != nil {
				t.Fatal(err)
			}
			got, err := b.Submit(page.Forms[tt.form], tt.button, tt.extra)
			if err != nil {
				t.Fatal(err)
			}
			if got.Body != tt.want {
				t.Errorf("server received\n %s\nwant\n %s", got.Body, tt.want)
			}
		})
	}

	t.Run("unknown button", func(t *testing.T) {
		b := NewBrowser()
		page, err := b.Get(srv.URL + "/consent/page")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Submit(page.Forms[0], "decision=maybe", nil); err == nil {
			t.Fatal("Submit pressed a button that does not exist")
		}
		if _, err := b.Submit(page.Forms[0], "help", nil); err == nil {
			t.Fatal("Submit pressed a type=button button, which does not submit")
		}
	})
}

func TestBrowserRedirectsAndCookies(t *testing.T) {
	var fetchedStop atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/start", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "s1", Path: "/"})
		http.Redirect(w, r, "/next", http.StatusFound)
	})
	mux.HandleFunc("/next", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("session")
		if err != nil {
			http.Error(w, "no session cookie", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "session="+c.Value)
	})
	mux.HandleFunc("/to-app", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "cursor://anysphere.cursor-retrieval/oauth/callback?code=c1", http.StatusFound)
	})
	mux.HandleFunc("/to-callback", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/callback?code=c2", http.StatusSeeOther)
	})
	mux.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		fetchedStop.Add(1)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b := NewBrowser()
	page, err := b.Get(srv.URL + "/start")
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusOK || page.Body != "session=s1" || page.URL.Path != "/next" {
		t.Errorf("after redirect: status %d URL %s body %q; want the cookie sent to /next", page.Status, page.URL, page.Body)
	}

	page, err = b.Get(srv.URL + "/to-app")
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusFound || page.URL.Scheme != "cursor" || page.URL.Query().Get("code") != "c1" {
		t.Errorf("custom scheme redirect: status %d URL %s; want to stop at cursor://", page.Status, page.URL)
	}

	b.StopAt(func(u *url.URL) bool { return u.Path == "/callback" })
	page, err = b.Get(srv.URL + "/to-callback")
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusSeeOther || page.URL.String() != srv.URL+"/callback?code=c2" || fetchedStop.Load() != 0 {
		t.Errorf("StopAt: status %d URL %s, callback fetched %d times; want to stop before fetching it", page.Status, page.URL, fetchedStop.Load())
	}

	b.StopAt(nil)
	if _, err := b.Get(srv.URL + "/to-callback"); err != nil || fetchedStop.Load() != 1 {
		t.Errorf("after StopAt(nil) the callback was fetched %d times (err %v), want 1", fetchedStop.Load(), err)
	}

	if _, err := b.Get(srv.URL + "/loop"); err == nil || !strings.Contains(err.Error(), "redirects") {
		t.Errorf("redirect loop: err %v, want a redirect limit error", err)
	}
}

func TestBrowserBoundsPageSize(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, maxPageBytes+1))
	}))
	defer srv.Close()
	if _, err := NewBrowser().Get(srv.URL); err == nil {
		t.Fatal("Get read a page larger than the limit")
	}
}
